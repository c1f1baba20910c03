"""The executor interface: the scheduler hands an executor ready nodes; outcomes come back.

An executor decides *where* a node runs (this process, a Celery worker, ...); the scheduler
decides *when* (readiness, concurrency limits, retries, cancellation). Every executor must pass
the shared conformance suite in ``tests/conformance``.

Contract:

* ``submit_many(jobs, report)`` is called on the runtime loop with jobs whose inputs are
  resolved values. For each job the executor calls ``report(job, outcome)`` exactly once, on the
  runtime loop or from a thread of its own — unless the job was cancelled, after which a late
  outcome may still arrive and is ignored. ``report`` only *enqueues* the outcome (thread-safe):
  the scheduler drains its queue in a loop iteration of its own (dask's ``local.py`` pattern),
  so an executor may call it anywhere, even inside ``submit_many``, without re-entering the
  scheduler (no recursion however long a chain of inline tools is).
* An executor keeps whatever it needs to find a job again (a task, a timer, a Celery task id)
  in its own tables, keyed by ``job.key``; a ``NodeJob`` carries no executor state.
* ``cancel(job)`` is best effort: stop the job if it is queued or running.
* The executor enforces the job's ``timeout`` where the tool runs and reports a
  ``NodeTimeoutError`` outcome. Retries are the scheduler's business.
* ``builtins()`` names the built-in backends (memory, kv, artifacts, channel) that code of a run
  on this executor must share with the places its tools run — for the Celery executor, the
  Redis-backed ones its workers use. An executor never swaps the process's own built-ins: a run
  gets these through its context, so in-process and distributed runs coexist in one process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import traceback as _traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aethergraph.errors import ConfigurationError, qualified_name
from aethergraph.graph.tool_spec import ToolSpec

if TYPE_CHECKING:
    from aethergraph.services.runtime.registry import BuiltinBackends


class NodeJob:
    """One attempt at running one node."""

    __slots__ = (
        "args",
        "attempt",
        "graph_id",
        "key",
        "node_id",
        "on_running",
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
        #: unique per attempt (``run:node:attempt``): what executors index their own state by
        self.key = f"{run_id}:{node_id}:{attempt}"
        #: set by the scheduler when its executor ``reports_running``: the executor calls it,
        #: on the runtime loop, with the wall-clock time the tool began on a worker — or with
        #: ``None`` when it sends the node again (its worker died): it waits again
        self.on_running: RunningCallback | None = None

    def __repr__(self) -> str:
        return f"<NodeJob {self.key} tool={self.tool.name}>"


class NodeFailure:
    """Why an attempt failed, in a form that can cross processes (``to_dict``/``from_dict``)."""

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
        #: False for failures a retry cannot fix (an argument that cannot be encoded, a tool
        #: the worker does not serve): the scheduler fails the node at once
        self.retryable = retryable

    @classmethod
    def from_exception(cls, exc: BaseException, *, retryable: bool = True) -> NodeFailure:
        """The failure for an exception raised here (its type, message and traceback)."""
        return cls(
            qualified_name(exc),
            str(exc),
            "".join(_traceback.format_exception(exc)),
            exc,
            retryable=retryable,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: everything but the live exception object."""
        return {
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.traceback,
            "retryable": self.retryable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeFailure:
        """Rebuild a failure from :meth:`to_dict` (a missing ``retryable`` means retryable)."""
        return cls(
            str(data.get("exc_type", "Exception")),
            str(data.get("message", "")),
            str(data.get("traceback", "")),
            retryable=bool(data.get("retryable", True)),
        )

    def __repr__(self) -> str:
        return f"<NodeFailure {self.exc_type}: {self.message}>"


def failure_from(exc: BaseException, *, retryable: bool = True) -> NodeFailure:
    """Shorthand for :meth:`NodeFailure.from_exception`."""
    return NodeFailure.from_exception(exc, retryable=retryable)


class NodeOutcome:
    """The result of one attempt: outputs, or a failure.

    ``started_at`` / ``finished_at`` are wall-clock times measured *where the tool ran* (a
    worker), so a node's duration excludes time spent in a queue; ``None`` lets the scheduler
    use its own clock (in-process executors).
    """

    __slots__ = ("failure", "finished_at", "outputs", "reused", "started_at")

    def __init__(
        self,
        outputs: dict[str, Any] | None = None,
        failure: NodeFailure | None = None,
        *,
        started_at: float | None = None,
        finished_at: float | None = None,
        reused: str | None = None,
    ) -> None:
        self.outputs = outputs
        self.failure = failure
        self.started_at = started_at
        self.finished_at = finished_at
        #: outputs that were not computed now: "cached" (an earlier call's) or "resumed"
        #: (this run's, from its durable record: a resumed or reattached run)
        self.reused = reused

    @property
    def ok(self) -> bool:
        return self.failure is None


#: How an executor reports an outcome: it only enqueues (see the module docstring).
DoneCallback = Callable[[NodeJob, NodeOutcome], None]
RunningCallback = Callable[[NodeJob, float | None], None]


def tell_running(job: NodeJob, at: float | None) -> None:
    """Call ``job.on_running(job, at)`` if the scheduler set it. It runs scheduler code and
    event listeners inside an executor's own loop (its result listener, its recovery): a
    failure there is logged, never raised into that loop, whose other nodes must go on."""
    if job.on_running is not None:
        try:
            job.on_running(job, at)
        except Exception:
            logging.getLogger("aethergraph").exception("marking node %s running failed", job.key)


class Executor(ABC):
    """Runs nodes. Subclasses: ``LocalExecutor`` (in-process), the Celery executor."""

    name: str = "executor"

    async def start(self) -> None:
        """Prepare (connect, spawn). Called once per process, on the runtime loop, before the
        first submit — however many runs share the executor (``execution.select``)."""

    async def close(self) -> None:
        """Release resources. Called on the runtime loop."""

    def builtins(self) -> BuiltinBackends | None:
        """The built-in backends runs on this executor use; ``None``: the process's own."""
        return None

    #: keeps durable run records (resume, reattach, ``aethergraph runs``)
    durable = False

    #: submitted nodes may wait before they run (in a broker queue, a worker's prefetch), and
    #: the executor calls ``job.on_running`` when one begins; False: a submitted node runs
    reports_running = False

    def run_started(
        self, run_id: str, describe: Callable[[], dict[str, Any]], *, resume: bool = False
    ) -> None:
        """A run on this executor began. ``describe()`` summarizes it for monitors (``graph``,
        ``counts`` of nodes by state); an executor that publishes runs calls it on the runtime
        loop. ``resume``: the run replays an earlier one with this id (only durable executors
        can). Default: nothing to publish, nothing to resume."""
        if resume:
            raise ConfigurationError(
                f"run(..., resume=True): the {self.name!r} executor keeps no run records to "
                "resume from. Resume runs on the Celery executor (a LocalCluster, or "
                "AETHERGRAPH_BROKER_URL); in-process, @tool(cache=True) reuses earlier outcomes"
            )

    def run_ended(
        self, run_id: str, summary: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[Any] | None:
        """The run settled (done, failed or cancelled): it is no longer in flight.
        ``summary``: its ``status``, ``counts``, ``error`` and encoded ``result`` (outputs).
        A durable executor returns a future done once the run's record says so (the run's
        entry point waits for it, briefly, so that the record is final when it returns)."""
        return None

    @abstractmethod
    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        """Start running ``jobs``; report each outcome through ``on_done`` on the runtime loop."""

    @abstractmethod
    def cancel(self, job: NodeJob) -> None:
        """Stop ``job`` if it is still queued or running (best effort)."""
