"""What a failed, skipped or broken node reports: the errors the scheduler builds.

Kept apart from the scheduler so its state machine reads as a state machine; these are pure
functions of a node and what went wrong.
"""

from __future__ import annotations

import traceback

from aethergraph.errors import InternalError, ToolError
from aethergraph.execution.base import NodeFailure, NodeJob
from aethergraph.scheduling.node_state import NodeState


def tool_error(run_id: str, state: NodeState, job: NodeJob, failure: NodeFailure) -> ToolError:
    """The error of a node whose last attempt failed."""
    error = ToolError(
        node_id=state.node.node_id,
        tool=state.node.tool,
        exc_type=failure.exc_type,
        message=failure.message,
        traceback=failure.traceback,
        run_id=run_id,
        attempts=job.attempt,
        original=failure.original,
    )
    if failure.original is not None:
        error.__cause__ = failure.original
    return error


def missing_input_error(run_id: str, state: NodeState, exc: BaseException) -> ToolError:
    """An input of the node names a value its upstream node did not produce."""
    return ToolError(
        node_id=state.node.node_id,
        tool=state.node.tool,
        exc_type="aethergraph.errors.OutputContractError",
        message=f"an input of this node refers to a missing value: {exc!r}",
        run_id=run_id,
    )


def skipped_error(run_id: str, state: NodeState, upstream: ToolError) -> ToolError:
    """The error of a node that cannot run because an upstream node failed."""
    return ToolError(
        node_id=state.node.node_id,
        tool=state.node.tool,
        exc_type=upstream.exc_type,
        message=upstream.message,
        traceback=upstream.traceback,
        run_id=run_id,
        upstream=upstream.upstream or upstream.node_id,
    )


def internal_error(run_id: str, exc: BaseException) -> InternalError:
    """A bug in the scheduler or an executor: the run fails with this instead of hanging."""
    text = "".join(traceback.format_exception(exc))
    error = InternalError(
        f"run {run_id} failed on an internal error of AetherGraph ({type(exc).__name__}: "
        f"{exc}); this is a bug — please report it with this traceback:\n{text}"
    )
    error.__cause__ = exc
    return error
