"""Choosing an executor: by instance, by name, or from settings (``AETHERGRAPH_EXECUTOR``)."""

from __future__ import annotations

import threading

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError
from aethergraph.execution.base import Executor
from aethergraph.settings import get_settings

_lock = threading.Lock()
_shared: dict[str, Executor] = {}
_running: list[Executor] = []  # executors this process started, oldest first


def _make(name: str) -> Executor:
    if name == "local":
        from aethergraph.execution.local import LocalExecutor

        return LocalExecutor()
    if name == "celery":
        from aethergraph.execution.celery_executor import CeleryExecutor

        return CeleryExecutor()
    raise ConfigurationError(
        f"unknown executor {name!r}; available: 'local', 'celery' or an Executor instance"
    )


def resolve_executor(executor: Executor | str | None) -> Executor:
    """The executor to use for a run: the one given, or the shared one for a name/the settings."""
    if isinstance(executor, Executor):
        return executor
    if executor is None:
        executor = get_settings().effective_executor
    if not isinstance(executor, str):
        raise ConfigurationError(
            f"executor must be an Executor instance or a name like 'local', got {executor!r}"
        )
    with _lock:
        if executor not in _shared:
            _shared[executor] = _make(executor)
        return _shared[executor]


def needs_start(executor: Executor) -> bool:
    return not any(started is executor for started in _running)


async def ensure_started(executor: Executor) -> None:
    """Start an executor once (on the runtime loop)."""
    if needs_start(executor):
        await executor.start()
        _running.append(executor)


async def close_executor(executor: Executor) -> None:
    """Close an executor started by a run (it is started again if used again)."""
    for index, started in enumerate(_running):
        if started is executor:
            del _running[index]
            await executor.close()
            return


async def _close_executors() -> None:
    """At exit: close every executor this process started (most recent first)."""
    while _running:
        await _running.pop().close()


runtime_loop.add_shutdown_hook(_close_executors)
