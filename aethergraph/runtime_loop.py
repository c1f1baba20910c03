"""The runtime thread: one background event loop per process that runs the scheduler and nodes.

Why a separate thread: a graph body may use a ref's value in plain, synchronous Python
(``f"{out['total']}"``). That has to block until the node has run. If nodes ran on the same
event loop as the body, blocking the body would block them too and the run would deadlock. Running
the scheduler (and, for the in-process executor, the tools) on a loop of its own makes such a
wait safe everywhere — in scripts, in async code and inside Jupyter's already-running loop.
Services are started and closed on this loop too.

Why hand-written rather than ``anyio.from_thread.start_blocking_portal``: the scheduler posts
work to this loop once per burst of traced calls and of finished nodes, and needs the raw
asyncio loop (``call_soon`` with a fresh ``contextvars.Context``, ``call_later`` timers, tasks).
A portal wraps each call in a task of its own and hides the loop; the ~100 lines here buy the
cheap wake-ups and the context isolation the hot path relies on.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aethergraph.errors import RuntimeUsageError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shutdown_hooks: list[Callable[[], Coroutine[Any, Any, None]]] = []


def get_loop() -> asyncio.AbstractEventLoop:
    """The runtime loop, started on first use."""
    global _loop, _thread
    loop = _loop
    if loop is not None and not loop.is_closed():
        return loop
    with _lock:
        if _loop is not None and not _loop.is_closed():
            return _loop
        ready = threading.Event()
        new_loop = asyncio.new_event_loop()

        def _serve() -> None:
            asyncio.set_event_loop(new_loop)
            new_loop.call_soon(ready.set)
            new_loop.run_forever()

        thread = threading.Thread(target=_serve, name="aethergraph-runtime", daemon=True)
        thread.start()
        ready.wait()
        _loop, _thread = new_loop, thread
        return new_loop


def in_runtime_thread() -> bool:
    """True when the caller runs on the runtime loop's thread."""
    return _thread is not None and threading.current_thread() is _thread


def call_soon(fn: Callable[..., Any], *args: Any) -> None:
    """Schedule ``fn(*args)`` on the runtime loop from any thread.

    The callback runs in a fresh, empty ``contextvars.Context``: the caller's context variables
    (the active trace of a graph body, its NodeContext) must not leak into the runtime thread,
    where they would make tools look as if they ran inside the body.
    """
    loop = get_loop()
    if in_runtime_thread():
        loop.call_soon(fn, *args, context=contextvars.Context())
    else:
        loop.call_soon_threadsafe(fn, *args, context=contextvars.Context())


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run a coroutine on the runtime loop; returns a thread-safe future.

    Like :func:`call_soon`, the coroutine starts in an empty context.
    """
    loop = get_loop()
    return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, loop)


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the runtime loop and block the calling thread for its result."""
    if in_runtime_thread():
        coro.close()
        raise RuntimeUsageError(
            "a blocking call was made on the AetherGraph runtime thread, where it would deadlock; "
            "use the async form (await ...) inside async tools and services"
        )
    return submit(coro).result(timeout)


async def run_here(coro: Coroutine[Any, Any, T]) -> T:
    """Await a coroutine on the runtime loop from any event loop (directly when already there)."""
    if in_runtime_thread():
        return await coro
    return await asyncio.wrap_future(submit(coro))


def add_shutdown_hook(hook: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Register a coroutine function to run on the runtime loop at interpreter exit."""
    _shutdown_hooks.append(hook)


def shutdown(timeout: float = 10.0) -> None:
    """Run the shutdown hooks and stop the runtime loop (called at exit; safe to call twice)."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop, _thread = None, None
    if loop is None or thread is None or loop.is_closed():
        return

    async def _run_hooks() -> None:
        for hook in reversed(_shutdown_hooks):
            try:
                await hook()
            except Exception:
                logging.getLogger("aethergraph").exception("shutdown hook failed")

    if threading.current_thread() is not thread:
        try:
            asyncio.run_coroutine_threadsafe(_run_hooks(), loop).result(timeout)
        except Exception:  # each hook logs its own failure; this is the wait itself failing
            logging.getLogger("aethergraph").warning(
                "shutdown hooks did not finish within %ss", timeout, exc_info=True
            )
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not loop.is_running():
            loop.close()


atexit.register(shutdown)
