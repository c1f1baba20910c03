"""Choosing an executor: by instance, by name, or from settings (``AETHERGRAPH_EXECUTOR``)."""

from __future__ import annotations

import asyncio
import logging
import threading

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError
from aethergraph.execution.base import Executor
from aethergraph.settings import get_settings

_lock = threading.Lock()
_shared: dict[str, Executor] = {}
_running: list[Executor] = []  # executors this process started, oldest first
# one start per executor, however many runs ask at once (runtime loop only): the first caller
# starts it, the others await the same future
_starting: dict[Executor, asyncio.Future[None]] = {}


def _make(name: str) -> Executor:
    if name == "local":
        from aethergraph.execution.local import LocalExecutor

        return LocalExecutor()
    if name == "celery":
        from aethergraph.execution.celery import CeleryExecutor

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
    """Cheap check from any thread: has this executor not finished starting yet?"""
    future = _starting.get(executor)
    return future is None or not future.done() or future.exception() is not None


async def ensure_started(executor: Executor) -> None:
    """Start an executor once per process (on the runtime loop), also under concurrent runs.

    A failed start is raised to every run that waited for it and tried again by the next run.
    """
    future = _starting.get(executor)
    if future is not None and future.done() and future.exception() is not None:
        future = None
    if future is None:
        future = asyncio.get_running_loop().create_future()
        _starting[executor] = future
        try:
            await executor.start()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the caller raises it
            raise
        _running.append(executor)
        future.set_result(None)
        return
    await asyncio.shield(future)


async def close_executor(executor: Executor) -> None:
    """Close an executor started by a run (it is started again if used again)."""
    _starting.pop(executor, None)
    for index, started in enumerate(_running):
        if started is executor:
            del _running[index]
            await executor.close()
            return


async def _close_executors() -> None:
    """At exit: close every executor this process started (most recent first)."""
    while _running:
        executor = _running.pop()
        _starting.pop(executor, None)
        try:
            await executor.close()
        except Exception:
            logging.getLogger("aethergraph").exception("closing executor %r failed", executor)


runtime_loop.add_shutdown_hook(_close_executors)
