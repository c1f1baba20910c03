"""``Service``: the base class of custom context services.

It gives subclasses three helpers — ``ctx()`` (the NodeContext of the caller, correct under
concurrency because it reads a context variable), ``critical()`` (a service-wide mutex usable
from every thread and event loop that calls the service) and ``run_blocking()`` (thread
offload) — plus optional ``start()`` / ``close()`` lifecycle hooks.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from aethergraph.errors import ConfigurationTypeError, RuntimeUsageError
from aethergraph.services.context import NodeContext, require_context

P = ParamSpec("P")
T = TypeVar("T")

_init_lock = threading.Lock()


class ServiceMutex:
    """An async mutex that works across threads and event loops, re-entrant per task.

    A service instance is shared by graph bodies (on the caller's loop) and tools (on the runtime
    loop or worker threads), so an ``asyncio.Lock`` — bound to one loop — would not do. Waiters
    park on a future of their own loop and are woken thread-safely.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: tuple[int, int] | None = None
        self._depth = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @staticmethod
    def _me() -> tuple[int, int]:
        return (threading.get_ident(), id(asyncio.current_task()))

    @property
    def locked(self) -> bool:
        return self._owner is not None

    async def acquire(self) -> None:
        me = self._me()
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._owner is None or self._owner == me:
                    self._owner = me
                    self._depth += 1
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            try:
                await fut
            except asyncio.CancelledError:
                with self._lock:
                    try:
                        self._waiters.remove((loop, fut))
                    except ValueError:
                        # we had been woken already: pass the wake-up on
                        self._wake_next_locked()
                raise

    def release(self) -> None:
        with self._lock:
            if self._owner is None:
                raise RuntimeUsageError("ServiceMutex.release() called while not held")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._wake_next_locked()

    def _wake_next_locked(self) -> None:
        if self._waiters:
            loop, fut = self._waiters.popleft()
            loop.call_soon_threadsafe(self._wake, fut)

    def _wake(self, fut: asyncio.Future[None]) -> None:
        if fut.done():  # its waiter was cancelled meanwhile: wake the next one instead
            with self._lock:
                if self._owner is None:
                    self._wake_next_locked()
        else:
            fut.set_result(None)


class Service:
    """Base class for custom services (``BaseContextService`` is the same class)."""

    def __init__(self) -> None:
        self._service_mutex = ServiceMutex()

    # -- context -----------------------------------------------------------------------
    def ctx(self) -> NodeContext:
        """The NodeContext of the node (or graph body) calling this service right now."""
        return require_context()

    # -- concurrency -------------------------------------------------------------------
    @property
    def mutex(self) -> ServiceMutex:
        """The service-wide mutex behind ``critical()`` (created on first use)."""
        mutex: ServiceMutex | None = self.__dict__.get("_service_mutex")
        if mutex is None:
            with _init_lock:
                mutex = self.__dict__.setdefault("_service_mutex", ServiceMutex())
        return mutex

    def critical(
        self,
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorator: run an async method under the service-wide mutex.

        Use it as in the tutorial, binding in ``__init__``:
        ``self.incr = self.critical()(self.incr)``. Re-entrant for the task that holds it.
        """

        def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            if not inspect.iscoroutinefunction(fn):
                raise ConfigurationTypeError(
                    f"critical() guards async methods; {getattr(fn, '__name__', fn)!r} is not "
                    "async. Make it 'async def', or move blocking work into run_blocking()."
                )

            @functools.wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                mutex = self.mutex
                await mutex.acquire()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    mutex.release()

            return guarded

        return decorate

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn(*args, **kwargs)`` in a worker thread (``ctx()`` still works there)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- lifecycle (optional) ----------------------------------------------------------
    async def start(self) -> None:
        """Open clients, pools, models. Called once, on the runtime loop, before first use."""

    async def close(self) -> None:
        """Release what ``start()`` opened. Called at ``stop_server()`` or interpreter exit."""


BaseContextService = Service

__all__ = ["BaseContextService", "Service", "ServiceMutex"]
