"""The executor interface: the scheduler hands an executor one ready node at a time.

An executor decides *where* a node runs (this process, a Celery worker, ...); the scheduler
decides *when* (readiness, concurrency limits, retries, cancellation). Every executor must pass
the shared conformance suite in ``tests/conformance``.

Contract:

* ``submit_many(jobs, on_done)`` is called on the runtime loop with jobs whose inputs are
  resolved values. For each job the executor calls ``on_done(job, outcome)`` exactly once, on the
  runtime loop — unless the job was cancelled, after which a late outcome may still arrive and is
  ignored by the scheduler.
* ``cancel(job)`` is best effort: stop the job if it is queued or running.
* The executor enforces the job's ``timeout`` where the tool runs and reports a
  ``NodeTimeoutError`` outcome. Retries are the scheduler's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from aethergraph.graph.tool_spec import ToolSpec


class NodeJob:
    """One attempt at running one node."""

    __slots__ = (
        "args",
        "attempt",
        "executor_state",
        "graph_id",
        "node_id",
        "run_id",
        "timeout",
        "tool",
    )

    def __init__(
        self,
        run_id: str,
        graph_id: str,
        node_id: str,
        tool: ToolSpec,
        args: dict[str, Any],
        attempt: int = 1,
        timeout: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.graph_id = graph_id
        self.node_id = node_id
        self.tool = tool
        self.args = args
        self.attempt = attempt
        self.timeout = timeout
        self.executor_state: Any = None  # private to the executor running the job (task, id)

    @property
    def key(self) -> str:
        return f"{self.run_id}:{self.node_id}:{self.attempt}"

    def __repr__(self) -> str:
        return f"<NodeJob {self.key} tool={self.tool.name}>"


class NodeFailure:
    """Why an attempt failed, in a form that can cross processes."""

    __slots__ = ("exc_type", "message", "original", "retryable", "traceback")

    def __init__(
        self,
        exc_type: str,
        message: str,
        traceback: str = "",
        original: BaseException | None = None,
        *,
        retryable: bool = True,
    ) -> None:
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.original = original
        #: False for failures a retry cannot fix (an argument that cannot be encoded)
        self.retryable = retryable

    def to_dict(self) -> dict[str, str]:
        return {"exc_type": self.exc_type, "message": self.message, "traceback": self.traceback}

    def __repr__(self) -> str:
        return f"<NodeFailure {self.exc_type}: {self.message}>"


class NodeOutcome:
    """The result of one attempt: outputs, or a failure."""

    __slots__ = ("failure", "outputs")

    def __init__(
        self, outputs: dict[str, Any] | None = None, failure: NodeFailure | None = None
    ) -> None:
        self.outputs = outputs
        self.failure = failure

    @property
    def ok(self) -> bool:
        return self.failure is None


DoneCallback = Callable[[NodeJob, NodeOutcome], None]


class Executor(ABC):
    """Runs nodes. Subclasses: ``LocalExecutor`` (in-process), the Celery executor."""

    name: str = "executor"

    async def start(self) -> None:
        """Prepare (connect, spawn). Called once on the runtime loop before the first submit."""

    async def close(self) -> None:
        """Release resources. Called on the runtime loop."""

    @abstractmethod
    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        """Start running ``jobs``; report each outcome through ``on_done`` on the runtime loop."""

    @abstractmethod
    def cancel(self, job: NodeJob) -> None:
        """Stop ``job`` if it is still queued or running (best effort)."""
