"""The per-process service registry behind ``context.<name>()``.

Each process (a notebook, a CLI run, later every worker process) has one registry holding

* the **built-in** backends — channel, memory, kv, artifacts — behind small interfaces so that
  a distributed deployment can swap in shared (Redis-backed) implementations, and
* the **custom** services registered with :func:`register_context_service`.

Lifecycle: a service's optional ``start()`` runs once before its first use by a run (or at
``start_server()``), ``close()`` at ``stop_server()`` or interpreter exit. Both run on the runtime
loop, so loop-bound clients opened in ``start()`` live on the loop where tools run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aethergraph import runtime_loop
from aethergraph.errors import ServiceRegistrationError, UnknownServiceError
from aethergraph.services.builtins.artifacts import ArtifactStore, FilesystemArtifactStore
from aethergraph.services.builtins.channel import (
    ChannelBackend,
    ConsoleChannelBackend,
    NullChannelBackend,
)
from aethergraph.services.builtins.kv import InMemoryKV, KVStore
from aethergraph.services.builtins.memory import InMemoryMemoryBackend, MemoryBackend
from aethergraph.settings import get_settings

log = logging.getLogger("aethergraph")

BUILTIN_SERVICES = frozenset({"logger", "channel", "memory", "artifacts", "kv"})
RESERVED_NAMES = BUILTIN_SERVICES | {"run_id", "graph_id", "node_id", "attempt", "services"}


@dataclass
class BuiltinBackends:
    """The process-wide backends of the built-in services."""

    channel: ChannelBackend
    memory: MemoryBackend
    kv: KVStore
    artifacts: ArtifactStore

    @classmethod
    def from_settings(cls) -> BuiltinBackends:
        settings = get_settings()
        channel: ChannelBackend = (
            NullChannelBackend() if settings.channel == "null" else ConsoleChannelBackend()
        )
        return cls(
            channel=channel,
            memory=InMemoryMemoryBackend(),
            kv=InMemoryKV(),
            artifacts=FilesystemArtifactStore(settings.artifacts_dir),
        )


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


class ServiceRegistry:
    """Built-in backends plus named custom services, with their start/close lifecycle."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._services: dict[str, Any] = {}
        self._started: dict[int, Any] = {}  # id(instance) -> instance, for instances we started
        self._builtins: BuiltinBackends | None = None
        self._lifecycle_tasks: set[asyncio.Task[None]] = set()  # kept until done (D9)
        self.serving = False

    # -- built-ins -------------------------------------------------------------------------
    @property
    def builtins(self) -> BuiltinBackends:
        backends = self._builtins
        if backends is None:
            with self._lock:
                if self._builtins is None:
                    self._builtins = BuiltinBackends.from_settings()
                backends = self._builtins
        return backends

    def configure_builtins(
        self,
        *,
        channel: ChannelBackend | None = None,
        memory: MemoryBackend | None = None,
        kv: KVStore | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> BuiltinBackends:
        """Replace some built-in backends (the others stay as they are)."""
        with self._lock:
            current = self.builtins
            # "is None", not "or": an empty in-memory store is falsy but still a choice
            self._builtins = BuiltinBackends(
                channel=current.channel if channel is None else channel,
                memory=current.memory if memory is None else memory,
                kv=current.kv if kv is None else kv,
                artifacts=current.artifacts if artifacts is None else artifacts,
            )
            return self._builtins

    # -- custom services -------------------------------------------------------------------
    def register(self, name: str, instance: Any) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ServiceRegistrationError(
                f"service name {name!r} is not usable as context.<name>(): use a Python "
                "identifier that does not start with '_', e.g. 'trainer'"
            )
        if name in RESERVED_NAMES:
            raise ServiceRegistrationError(
                f"{name!r} is a built-in of NodeContext and cannot be replaced by "
                "register_context_service(); register your service under its own name "
                f"(e.g. '{name}_mirror'), or swap the built-in backend with configure_builtins()"
            )
        if instance is None or isinstance(instance, type):
            raise ServiceRegistrationError(
                f"register_context_service({name!r}, ...) needs a service *instance*, got "
                f"{instance!r}; write register_context_service({name!r}, MyService())"
            )
        with self._lock:
            previous = self._services.get(name)
            self._services[name] = instance
            serving = self.serving
        if previous is not None and previous is not instance and id(previous) in self._started:
            self._run_lifecycle(self._close_one(previous))
        if serving:
            self._run_lifecycle(self._start_one(instance))

    def unregister(self, name: str) -> None:
        with self._lock:
            previous = self._services.pop(name, None)
        if previous is not None and id(previous) in self._started:
            self._run_lifecycle(self._close_one(previous))

    def get(self, name: str) -> Any:
        try:
            return self._services[name]
        except KeyError:
            known = sorted(self._services)
            raise UnknownServiceError(
                f"no context service named {name!r}; registered services: {known or 'none'} "
                f"(built-ins: {sorted(BUILTIN_SERVICES)}). Register one with "
                f"register_context_service({name!r}, instance) before running the graph."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._services)

    # -- lifecycle -------------------------------------------------------------------------
    def needs_start(self) -> bool:
        """True when some registered service has not been started yet (cheap check)."""
        return any(id(svc) not in self._started for svc in list(self._services.values()))

    async def start_all(self) -> None:
        """Start every registered service that is not started yet (runs on the runtime loop)."""
        for svc in list(self._services.values()):
            await self._start_one(svc)

    async def close_all(self) -> None:
        """Close every service this registry started, most recently started first."""
        with self._lock:
            started = list(self._started.values())
        for svc in reversed(started):
            await self._close_one(svc)

    async def _start_one(self, svc: Any) -> None:
        with self._lock:
            if id(svc) in self._started:
                return
            self._started[id(svc)] = svc
        start = getattr(svc, "start", None)
        if callable(start):
            try:
                await _maybe_await(start())
            except BaseException:
                with self._lock:
                    self._started.pop(id(svc), None)
                raise

    async def _close_one(self, svc: Any) -> None:
        with self._lock:
            if self._started.pop(id(svc), None) is None:
                return
        close = getattr(svc, "close", None)
        if callable(close):
            try:
                await _maybe_await(close())
            except Exception:
                log.exception("closing service %r failed", svc)

    def _run_lifecycle(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start or close a service on the runtime loop: in the background when called there
        (the task is kept and its failure logged), else waiting for it."""
        if runtime_loop.in_runtime_thread():
            task = runtime_loop.get_loop().create_task(coro)
            self._lifecycle_tasks.add(task)
            task.add_done_callback(self._lifecycle_done)
        else:
            runtime_loop.run_sync(coro)

    def _lifecycle_done(self, task: asyncio.Task[None]) -> None:
        self._lifecycle_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("starting or closing a service failed", exc_info=task.exception())


_REGISTRY = ServiceRegistry()


def current_services() -> ServiceRegistry:
    """The service registry of this process."""
    return _REGISTRY


def register_context_service(name: str, instance: Any) -> None:
    """Make ``instance`` available in every node as ``context.<name>()``.

    Registering again under the same name swaps the implementation (handy for fakes in tests);
    a replaced instance that had been started is closed.
    """
    _REGISTRY.register(name, instance)


def unregister_context_service(name: str) -> None:
    """Remove a custom service (closing it if it was started)."""
    _REGISTRY.unregister(name)


def get_context_service(name: str) -> Any:
    """The instance registered under ``name`` (``UnknownServiceError`` if none)."""
    return _REGISTRY.get(name)


def list_context_services() -> list[str]:
    """Names of the registered custom services."""
    return _REGISTRY.names()


async def _close_at_exit() -> None:
    await _REGISTRY.close_all()


runtime_loop.add_shutdown_hook(_close_at_exit)
