"""Run one tool call where the executor placed it: inject the context, call, normalize outputs.

Shared by every executor (and by Celery workers), so a tool behaves the same wherever it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aethergraph.errors import NodeTimeoutError
from aethergraph.execution.base import NodeJob, NodeOutcome, failure_from
from aethergraph.services.context import NodeContext, reset_context, set_context


def _node_context(job: NodeJob) -> NodeContext:
    return NodeContext(
        run_id=job.run_id, graph_id=job.graph_id, node_id=job.node_id, attempt=job.attempt
    )


def _call_args(job: NodeJob, ctx: NodeContext) -> dict[str, Any]:
    if job.tool.wants_context:
        args = dict(job.args)
        args["context"] = ctx
        return args
    return job.args


async def invoke_async(job: NodeJob, *, own_task: bool = False) -> NodeOutcome:
    """Run an async tool in the current task (sets the current NodeContext for ``ctx()``).

    ``own_task``: the caller created a task just for this call, so the context variable need not
    be reset afterwards (the task's context dies with it) — one less operation per node.
    """
    ctx = _node_context(job)
    token = set_context(ctx)
    try:
        if job.timeout is None:
            value = await job.tool.fn(**_call_args(job, ctx))
        else:
            try:
                async with asyncio.timeout(job.timeout):
                    value = await job.tool.fn(**_call_args(job, ctx))
            except TimeoutError as exc:
                raise NodeTimeoutError(
                    f"tool {job.tool.name!r} exceeded its timeout of {job.timeout}s"
                ) from exc
        return NodeOutcome(job.tool.normalize_outputs(value))
    except Exception as exc:
        return NodeOutcome(failure=failure_from(exc))
    finally:
        if not own_task:
            reset_context(token)


def invoke_sync(job: NodeJob) -> NodeOutcome:
    """Run a sync tool in the calling thread (sets the current NodeContext for ``ctx()``)."""
    ctx = _node_context(job)
    token = set_context(ctx)
    try:
        return NodeOutcome(job.tool.normalize_outputs(job.tool.fn(**_call_args(job, ctx))))
    except Exception as exc:
        return NodeOutcome(failure=failure_from(exc))
    finally:
        reset_context(token)
