"""``RunScheduler``: drives one run's nodes through an executor.

Threading model. Tracing (the graph body) runs on the caller's thread and only *adds* nodes: each
new node goes into an inbox, and one wake-up per burst is posted to the runtime loop. Everything
else — readiness, dispatch, outcomes, retries, cancellation, events — happens on the runtime
thread, so scheduler state needs no locks. Waiters on the caller's side are woken through
:class:`~aethergraph.scheduling.waiting.Waitable`.

Outcomes are *pulled*. An executor reports an outcome by appending it to the scheduler's queue
(``_report``); the scheduler drains that queue in a loop iteration of its own. Dispatching the
dependents of a finished node may make an inline executor report more outcomes at once — they
join the queue being drained, so a chain of any length runs iteratively, never recursively
(dask's ``local.py`` does the same with ``queue.put`` / ``queue_get``).

Nothing is swallowed. Every entry point on the runtime thread runs under ``_guarded``: an
unexpected exception (a bug here or in an executor) fails the run with an ``InternalError``
that carries the traceback, and is logged — the run never hangs silently.

A node is dispatched as soon as its inputs are ready (and a concurrency slot is free). A node that
fails after its retries makes every node downstream of it *skipped*; independent nodes go on
unless ``fail_fast`` is set. The run finishes when the body has returned and every node has
settled. Memory: see :mod:`aethergraph.scheduling.node_state`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aethergraph import runtime_loop
from aethergraph.errors import RunCancelledError, RuntimeUsageError, ToolError
from aethergraph.execution.base import (
    DoneCallback,
    Executor,
    NodeFailure,
    NodeJob,
    NodeOutcome,
    failure_from,
)
from aethergraph.graph.refs import RefBase, substitute
from aethergraph.graph.task_graph import NodeStatus, TaskGraph
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.scheduling.cache import CachedCalls, NodeCache
from aethergraph.scheduling.events import GLOBAL_BUS, Listener, RunEventType
from aethergraph.scheduling.failures import (
    internal_error,
    missing_input_error,
    tool_error,
)
from aethergraph.scheduling.node_book import NodeBook
from aethergraph.scheduling.node_state import NodeState, OutputCell
from aethergraph.scheduling.outcomes import OutcomeQueue
from aethergraph.services.runtime.registry import BuiltinBackends

log = logging.getLogger("aethergraph")

_DONE = NodeStatus.DONE
_RUNNING = NodeStatus.RUNNING


def _lookup(ref: RefBase) -> Any:
    """A dependency's value for a node about to run (hot: once per edge).

    Only this run's RunRefs get here (``add_node`` admits no other), and only once their nodes
    finished without error (a failed dependency skips the node before dispatch), so the value is
    read from the output cell directly.
    """
    outputs = ref._cell[0]  # type: ignore[attr-defined]
    path = ref._ref_path
    if not path:
        return outputs
    if len(path) == 1:
        return outputs[path[0]]
    return ref._ref_extract(outputs)


class RunScheduler(NodeBook):
    """One run: the policy that runs its nodes (readiness, dispatch, retries, cancellation)."""

    def __init__(
        self,
        graph: TaskGraph,
        executor: Executor,
        *,
        builtins: BuiltinBackends,
        max_concurrency: int | None = None,
        fail_fast: bool = False,
        on_event: Listener | None = None,
    ) -> None:
        super().__init__(graph, executor, on_event)
        #: the built-in backends of this run (the executor's shared ones, or the process's)
        self.builtins = builtins
        self.max_concurrency = max_concurrency
        self.fail_fast = fail_fast
        self.status = "running"
        self.failure: BaseException | None = None
        self._loop = runtime_loop.get_loop()
        self._inbox: deque[NodeState] = deque()
        self._wake_pending = False
        self._outcomes = OutcomeQueue(self._on_outcome, self._guarded)
        self._report = self._outcomes.report
        self._ready: deque[NodeState] = deque()
        self._body_done = False
        self._cancelled = False
        self._cache: CachedCalls | None = None  # made for the first node of a caching tool
        self._soon(self._emit_run, "run_started")

    # -- called from the tracing thread ---------------------------------------------------
    def add_node(
        self, tool: ToolSpec, inputs: dict[str, Any], refs: list[RefBase]
    ) -> tuple[NodeState, OutputCell]:
        """Add a node for ``tool(**inputs)``; it is dispatched as soon as its refs resolve.

        Returns its state and the cell its outputs will be in (taken here, before the node can
        finish, so a handle made from them always sees the outputs).
        """
        if self._cancelled:
            raise RunCancelledError(self.run_id, self.cancel_reason or "cancelled")
        if self._body_done or self.is_finished:
            raise RuntimeUsageError(
                f"tool {tool.name!r} was called after run {self.run_id} finished; call tools "
                "inside the graph body (not from callbacks that outlive it)"
            )
        state = self._new_state(tool, inputs, refs)
        cell = state.cell
        assert cell is not None
        self._inbox.append(state)
        if not self._wake_pending:
            self._wake_pending = True
            self._soon(self._drain)
        return state, cell

    def body_finished(self) -> None:
        """The graph body returned (or raised): no more nodes will be added."""
        self._soon(self._on_body_finished)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: unfinished nodes are cancelled, running ones are stopped."""
        self._soon(self._cancel_now, reason)

    # -- runtime thread -------------------------------------------------------------------
    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        runtime_loop.call_soon(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._break(exc)

    def _on_body_finished(self) -> None:
        self._body_done = True
        self._drain()
        self._maybe_finish()

    def _drain(self) -> None:
        self._wake_pending = False
        inbox, nodes = self._inbox, self._nodes
        ready: list[NodeState] = []
        emit = self._emit.listeners or GLOBAL_BUS.listeners
        while inbox:
            state = inbox.popleft()
            if state.is_finished:  # cancelled before it was drained
                continue
            if self._cancelled:
                self._finish(state, NodeStatus.CANCELLED, self._cancel_error(), "cancelled")
                continue
            if emit:
                self._emit.node("added", state.node)
            remaining = 0
            failed_dep: NodeState | None = None
            for dep_id in state.node.deps:
                dep = nodes[dep_id]
                if dep.is_finished:
                    if dep.error is not None:
                        failed_dep = dep
                        break
                else:
                    remaining += 1
                    dep.dependents.append(state)
            if failed_dep is not None:
                self._skip(state, failed_dep)
                continue
            state.remaining = remaining
            if remaining == 0:
                ready.append(state)
        if ready:
            self._dispatch(ready)
        if self._body_done:
            self._maybe_finish()

    def _dispatch(self, states: list[NodeState]) -> None:
        jobs: list[NodeJob] = []
        limit = self.max_concurrency
        for state in states:
            if state.is_finished:
                continue
            if limit is not None and self._running >= limit:
                self._ready.append(state)
                continue
            job = self._make_job(state)
            if job is not None:
                self._running += 1
                jobs.append(job)
        if jobs:
            if self._cache is not None or any(job.tool.policy.cache for job in jobs):
                cached = [job for job in jobs if job.tool.policy.cache]
                if cached:
                    jobs = [job for job in jobs if not job.tool.policy.cache]
                    self._cached_calls().take(cached)
            if jobs:
                self._submit(jobs)

    def _cached_calls(self) -> CachedCalls:
        if self._cache is None:  # it holds this scheduler weakly: no reference cycle
            self._cache = CachedCalls(NodeCache(self.builtins.kv), self._loop, self)
        return self._cache

    def _submit(self, jobs: list[NodeJob], on_done: DoneCallback | None = None) -> None:
        try:
            self.executor.submit_many(jobs, on_done or self._report)
        except Exception as exc:  # the executor refused them: those nodes fail, visibly
            for job in jobs:
                self._report(job, NodeOutcome(failure=failure_from(exc)))

    def _make_job(self, state: NodeState) -> NodeJob | None:
        node = state.node
        args = state.args
        assert args is not None
        if state.refs:
            try:
                args = substitute(args, _lookup)
            except (KeyError, IndexError, TypeError) as exc:
                self._fail(state, missing_input_error(self.run_id, state, exc))
                return None
        node.status = _RUNNING
        node.attempts += 1
        node.queued_at = now = time.time()
        node.started_at = None if self._running_hook else now  # sent, or running (node_book)
        job = NodeJob(
            self.run_id,
            self.graph_id,
            node.node_id,
            state.tool,
            args,
            node.attempts,
            state.tool.policy.timeout,
        )
        job.on_running = self._running_hook
        state.job = job
        if self._emit.listeners or GLOBAL_BUS.listeners:
            self._emit.node("started", node)
        return job

    def _on_outcome(self, job: NodeJob, outcome: NodeOutcome) -> None:
        state = self._nodes.get(job.node_id)
        if state is None or state.job is not job or state.is_finished:
            return  # a late outcome of a cancelled or superseded attempt
        state.job = None
        self._running -= 1
        node = state.node
        if outcome.started_at is not None:  # measured where the tool ran
            node.started_at = outcome.started_at
        if outcome.failure is None:
            if outcome.outputs is None:  # a broken executor: fail the run, loudly
                raise RuntimeError(
                    f"executor {self.executor.name!r} reported node {node.node_id!r} done "
                    "without outputs"
                )
            node.finished_at = outcome.finished_at or time.time()
            if outcome.reused is not None:
                node.reused = outcome.reused
            cell, state.cell = state.cell, None
            if cell is not None:
                cell[0] = outcome.outputs
            node.status = _DONE
            if self._emit.listeners or GLOBAL_BUS.listeners:
                self._emit.node("done", node)
            state.args = None
            if state.refs:
                state.refs = []
            state.mark_finished()
            self._finished_count += 1
            ready: list[NodeState] = []
            for dependent in state.dependents:
                if not dependent.is_finished:
                    dependent.remaining -= 1
                    if dependent.remaining == 0:
                        ready.append(dependent)
            state.dependents = []
            if ready:
                self._dispatch(ready)
        else:
            self._on_failure(state, job, outcome.failure)
        if self._ready:
            self._fill_slots()
        if self._finished_count == len(self._nodes):
            self._maybe_finish()

    def _on_failure(self, state: NodeState, job: NodeJob, failure: NodeFailure) -> None:
        policy = state.tool.policy
        if job.attempt <= policy.retries and failure.retryable and not self._cancelled:
            delay = policy.backoff_delay(job.attempt)
            state.node.status = NodeStatus.PENDING
            if self._emit.listeners or GLOBAL_BUS.listeners:
                error = f"{failure.exc_type}: {failure.message}"
                self._emit.node("retrying", state.node, error=error, retry_in=delay)
            self._loop.call_later(delay, self._guarded, self._retry, state)
            return
        self._fail(state, tool_error(self.run_id, state, job, failure))

    def _retry(self, state: NodeState) -> None:
        if not state.is_finished and not self._cancelled:
            self._dispatch([state])

    def _fail(self, state: NodeState, error: ToolError) -> None:
        if self.failure is None:
            self.failure = error
        self._finish(state, NodeStatus.FAILED, error, "failed")
        self._skip_dependents(state)
        if self.fail_fast:
            self._cancel_now(f"cancelled after node {state.node.node_id!r} failed (fail_fast)")

    def _fill_slots(self) -> None:
        limit, ready = self.max_concurrency, self._ready
        batch: list[NodeState] = []
        while ready and (limit is None or self._running + len(batch) < limit):
            batch.append(ready.popleft())
        if batch:
            self._dispatch(batch)

    def _cancel_now(self, reason: str) -> None:
        if self.is_finished or self._cancelled:
            return
        self._drain()
        self._cancelled = True
        self.cancel_reason = reason
        self._ready.clear()
        self._stop_all(self._cancel_error())
        self._maybe_finish()

    def _break(self, exc: BaseException) -> None:
        """An internal error: log it, fail the run with it, stop what still runs — never hang."""
        log.error("internal error in run %s", self.run_id, exc_info=exc)
        error = internal_error(self.run_id, exc)
        if self.failure is None or isinstance(self.failure, ToolError):
            self.failure = error
        self._body_done = self._cancelled = True
        self.cancel_reason = f"failed on an internal error ({type(exc).__name__})"
        try:
            self._stop_all(error)
        except Exception:
            log.exception("could not stop the nodes of run %s after an internal error", self.run_id)
            for state in self._nodes.values():
                if not state.is_finished:
                    state.error = error
                    state.mark_finished()
        if not self.is_finished:
            self.status = "failed"
            self.mark_finished()

    def _maybe_finish(self) -> None:
        if self.is_finished or not self._body_done or self._finished_count != len(self._nodes):
            return
        if self.failure is not None:
            self.status = "failed"
        elif self._cancelled:
            self.status = "cancelled"
        else:
            self.status = "done"
        self._emit_run("run_finished")
        self.mark_finished()

    def _emit_run(self, kind: RunEventType) -> None:
        if self._emit.listeners or GLOBAL_BUS.listeners:
            self._emit.run(kind, self)
