"""Wiring a worker runtime to Celery's signals: when its parts start and stop.

Celery tells a worker's code about its life only through global signals, so this is the one
module that connects to them (with strong references: the handlers are closures). Which
signal builds the services depends on the pool: prefork children each build their own in
``worker_process_init`` (a runtime thread does not survive ``fork``), thread and solo pools
share the main process's, built in ``worker_init``.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery import signals


class Lifecycle(Protocol):
    """What a worker runtime does at each point of its life."""

    def on_ready(self) -> None: ...  # the main process consumes: start the heartbeat

    def on_stopping(self) -> None: ...  # SIGTERM: a warm shutdown begins (main process)

    def on_shutdown(self) -> None: ...  # the main process stops

    def on_process_init(self) -> None: ...  # a process that runs tasks begins

    def on_process_shutdown(self) -> None: ...  # a prefork child stops

    def on_unknown_task(self, message: Any, name: str, task_id: str) -> None: ...

    # a task failed outside a tool (its pool process died: WorkerLostError); main process
    def on_task_failure(self, task_id: str, exception: BaseException, kwargs: Any) -> None: ...


def connect_signals(runtime: Lifecycle, *, prefork: bool) -> None:
    """Connect ``runtime``'s hooks to Celery's signals."""

    def ready(**_: Any) -> None:
        runtime.on_ready()

    def shutdown(**_: Any) -> None:
        runtime.on_shutdown()

    def shutting_down(how: str = "", **_: Any) -> None:
        if how == "Warm":
            runtime.on_stopping()

    def init(**_: Any) -> None:
        runtime.on_process_init()

    def child_shutdown(**_: Any) -> None:
        runtime.on_process_shutdown()

    def unknown(message: Any = None, name: str = "", id: str = "", **_: Any) -> None:
        runtime.on_unknown_task(message, name, id)

    def failure(
        task_id: str = "", exception: BaseException | None = None, kwargs: Any = None, **_: Any
    ) -> None:
        if exception is not None:
            runtime.on_task_failure(task_id, exception, kwargs)

    signals.worker_ready.connect(ready, weak=False)
    signals.task_failure.connect(failure, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)
    signals.worker_shutting_down.connect(shutting_down, weak=False)
    signals.task_unknown.connect(unknown, weak=False)
    if prefork:
        signals.worker_process_init.connect(init, weak=False)
        signals.worker_process_shutdown.connect(child_shutdown, weak=False)
    else:
        signals.worker_init.connect(init, weak=False)
