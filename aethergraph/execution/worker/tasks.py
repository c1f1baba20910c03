"""The Celery tasks of a worker: one per tool it serves, named after the tool.

Tool names as task names make Flower and Celery's logs show what runs. The tasks are the
worker's allowlist (only tools found by ``loading.load_tools``): the ``celery.*`` tasks Celery
registers in every app (``celery.chord_unlock``, ``celery.backend_cleanup``, the canvas
helpers) are removed, so a forged message naming one is refused like any other task the worker
does not serve — a worker runs tools, nothing else. A message for any other task name is not
lost silently: :func:`unknown_task_outcomes` turns it into a failure for each of its
nodes, pushed to the submitting client, marked not retryable (another attempt would find the
same worker pool) and naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery

from aethergraph.errors import WorkerUnavailableError, qualified_name
from aethergraph.execution.base import NodeFailure
from aethergraph.execution.shipping import SHIPPED_TASK
from aethergraph.execution.wire import META
from aethergraph.execution.worker.outcomes import Finished, failed_now
from aethergraph.graph.tool_spec import ToolSpec

#: what a tool task calls: (Celery task id, the tool, the message's keyword arguments) -> the
#: task's result (it raises the message's failure: ``reporting.py``)
Execute = Callable[[str, ToolSpec, dict[str, Any]], Any]


def register_tool_tasks(app: Celery, tools: Iterable[ToolSpec], execute: Execute) -> None:
    """Register one Celery task per tool; each hands its message to ``execute``.

    Afterwards the app serves exactly these tasks: reading ``app.tasks`` finalizes the app, which
    adds Celery's built-in tasks once and for all, and they are removed right after.
    """
    served: set[str] = set()
    for spec in tools:
        _register(app, spec, execute)
        served.add(spec.name)
    registry = app.tasks
    for name in [name for name in registry if name not in served]:
        del registry[name]


def _register(app: Celery, spec: ToolSpec, execute: Execute) -> None:
    def node_task(self: Any, **kwargs: Any) -> Any:
        return execute(self.request.id, spec, kwargs)

    node_task.__name__ = spec.name.replace(".", "_")  # celery execs a header named after it
    node_task.__doc__ = spec.description
    app.task(
        name=spec.name,
        bind=True,
        typing=False,
        acks_late=True,
        # a pool process that dies mid-task is reported to the client (a handback, see
        # WorkerRuntime.on_task_failure), which counts the death and sends the nodes again;
        # requeueing here would loop a poison node for ever and re-run a pack's finished nodes
        reject_on_worker_lost=False,
        ignore_result=True,
    )(node_task)


def unknown_task_outcomes(
    message: Any, name: str, task_id: str, *, worker_id: str, served: Iterable[str]
) -> tuple[str, list[Finished]] | None:
    """``(client, failures)`` for a message naming a task this worker does not serve.

    ``None`` when the message is not one of ours (no AetherGraph metadata): Celery reports it.
    """
    body = message.decode() if message is not None else None
    kwargs = body[1] if isinstance(body, (list, tuple)) and len(body) > 1 else {}
    meta = kwargs.get(META) if isinstance(kwargs, dict) else None
    if not isinstance(meta, dict) or "client" not in meta:
        return None
    if name == SHIPPED_TASK:
        error = WorkerUnavailableError(
            f"worker {worker_id} does not accept tools shipped from notebooks (it serves "
            f"{sorted(served)}); start workers for this queue with --accept-code "
            "(docs/notebooks.md)"
        )
    else:
        error = WorkerUnavailableError(
            f"worker {worker_id} does not serve tool {name!r} (it serves {sorted(served)}); "
            f"start workers for this queue with --tools <module defining {name}>"
        )
    failure = NodeFailure(qualified_name(error), str(error), retryable=False)
    nodes = meta.get("pack") or [{**meta, "id": task_id}]
    outcome = failed_now(failure)
    return str(meta["client"]), [Finished(str(node["id"]), node, outcome) for node in nodes]
