"""``RunScheduler``: drives one run's nodes through an executor.

Threading model. Tracing (the graph body) runs on the caller's thread and only *adds* nodes: each
new node goes into an inbox, and one wake-up per burst is posted to the runtime loop. Everything
else — readiness, dispatch, outcomes, retries, cancellation, events — happens on the runtime
thread, so scheduler state needs no locks. Waiters on the caller's side are woken through
:class:`~aethergraph.scheduling.waiting.Waitable`.

A node is dispatched as soon as its inputs are ready (and a concurrency slot is free). A node that
fails after its retries makes every node downstream of it *skipped*; independent nodes go on
unless ``fail_fast`` is set. The run finishes when the body has returned and every node has
settled.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError, RunCancelledError, RuntimeUsageError, ToolError
from aethergraph.execution.base import Executor, NodeFailure, NodeJob, NodeOutcome
from aethergraph.graph.refs import RefBase, substitute
from aethergraph.graph.task_graph import NodeStatus, TaskGraph, TaskNode
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.scheduling.events import (
    GLOBAL_BUS,
    Listener,
    NodeEvent,
    NodeEventType,
    RunEvent,
    dispatch,
)
from aethergraph.scheduling.waiting import Waitable

_DONE = NodeStatus.DONE
_RUNNING = NodeStatus.RUNNING


class NodeState(Waitable):
    """Runtime state of one node (the TaskNode holds what is shown to users)."""

    __slots__ = ("dependents", "error", "job", "node", "outputs", "refs", "remaining", "tool")

    def __init__(self, node: TaskNode, tool: ToolSpec, refs: list[RefBase]) -> None:
        self.is_finished = False
        self.waiters = None
        self.node = node
        self.tool = tool
        self.refs = refs
        self.remaining = 0
        self.dependents: list[NodeState] = []
        self.outputs: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.job: NodeJob | None = None

    def result(self) -> dict[str, Any]:
        """The outputs of a finished node, or its error raised."""
        if self.error is not None:
            raise self.error
        assert self.outputs is not None, "result() called before the node finished"
        return self.outputs


class RunScheduler(Waitable):
    """One run: its graph, its nodes' runtime state, and the policy to run them."""

    def __init__(
        self,
        graph: TaskGraph,
        executor: Executor,
        *,
        max_concurrency: int | None = None,
        fail_fast: bool = False,
        on_event: Listener | None = None,
    ) -> None:
        super().__init__()
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ConfigurationError(
                f"max_concurrency must be a positive int or None, got {max_concurrency!r}"
            )
        if on_event is not None and not callable(on_event):
            raise ConfigurationError(f"on_event must be callable, got {on_event!r}")
        self.run_id = graph.run_id or uuid.uuid4().hex
        graph.run_id = self.run_id
        self.graph = graph
        self.graph_id = graph.graph_id
        self.executor = executor
        self.max_concurrency = max_concurrency
        self.fail_fast = fail_fast
        self.status = "running"
        self.failure: ToolError | None = None
        self.cancel_reason: str | None = None
        self._listeners: tuple[Listener, ...] = (on_event,) if on_event else ()
        self._loop = runtime_loop.get_loop()
        self._nodes: dict[str, NodeState] = {}
        self._counters: dict[str, Iterator[int]] = {}
        self._inbox: deque[NodeState] = deque()
        self._wake_pending = False
        self._ready: deque[NodeState] = deque()
        self._running = 0
        self._finished_count = 0
        self._body_done = False
        self._cancelled = False
        runtime_loop.call_soon(self._emit_run, "run_started")

    # -- called from the tracing thread ---------------------------------------------------
    def add_node(self, tool: ToolSpec, inputs: dict[str, Any], refs: list[RefBase]) -> NodeState:
        """Add a node for ``tool(**inputs)``; it is dispatched as soon as its refs resolve."""
        if self._cancelled:
            raise RunCancelledError(self.run_id, self.cancel_reason or "cancelled")
        if self._body_done or self.is_finished:
            raise RuntimeUsageError(
                f"tool {tool.name!r} was called after run {self.run_id} finished; call tools "
                "inside the graph body (not from callbacks that outlive it)"
            )
        counter = self._counters.get(tool.name)
        if counter is None:
            counter = self._counters[tool.name] = itertools.count()
        node_id = f"{tool.name}_{next(counter)}"
        deps: tuple[str, ...] = ()
        if refs:
            seen: dict[str, None] = {}
            for ref in refs:
                if getattr(ref, "_run", None) is not self:
                    raise RuntimeUsageError(
                        f"tool {tool.name!r} was given {ref._ref_describe()}, a reference that "
                        "does not belong to this run; pass values (await them) between runs, "
                        "handles within one"
                    )
                seen[ref._ref_node] = None
            deps = tuple(seen)
        node = TaskNode(
            node_id, tool.name, tool.version, inputs, deps, tool.policy.queue, time.time()
        )
        self.graph.nodes[node_id] = node
        state = NodeState(node, tool, refs)
        self._nodes[node_id] = state
        self._inbox.append(state)
        if not self._wake_pending:
            self._wake_pending = True
            runtime_loop.call_soon(self._drain)
        return state

    def body_finished(self) -> None:
        """The graph body returned (or raised): no more nodes will be added."""
        runtime_loop.call_soon(self._on_body_finished)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: unfinished nodes are cancelled, running ones are stopped."""
        runtime_loop.call_soon(self._cancel_now, reason)

    def node(self, node_id: str) -> NodeState:
        return self._nodes[node_id]

    # -- runtime thread -------------------------------------------------------------------
    def _on_body_finished(self) -> None:
        self._body_done = True
        self._drain()
        self._maybe_finish()

    def _drain(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        ready: list[NodeState] = []
        nodes = self._nodes
        emit = self._listeners or GLOBAL_BUS.listeners
        while inbox:
            state = inbox.popleft()
            if state.is_finished:  # cancelled before it was drained
                continue
            if self._cancelled:
                self._finish(state, NodeStatus.CANCELLED, self._cancel_error(), "cancelled")
                continue
            if emit:
                self._emit_node("added", state)
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
            try:
                self.executor.submit_many(jobs, self._on_done)
            except Exception as exc:  # the executor could not take them: fail those nodes
                from aethergraph.execution.base import failure_from

                failure = failure_from(exc)
                for job in jobs:
                    self._on_done(job, NodeOutcome(failure=failure))

    def _make_job(self, state: NodeState) -> NodeJob | None:
        node = state.node
        args = node.inputs
        if state.refs:
            try:
                args = substitute(args, self._lookup)
            except (KeyError, IndexError, TypeError) as exc:
                error = ToolError(
                    node_id=node.node_id,
                    tool=node.tool,
                    exc_type="aethergraph.errors.OutputContractError",
                    message=f"an input of this node refers to a missing value: {exc!r}",
                    run_id=self.run_id,
                )
                self._fail(state, error)
                return None
        node.status = _RUNNING
        node.attempts += 1
        node.started_at = time.time()
        job = NodeJob(
            self.run_id,
            self.graph_id,
            node.node_id,
            state.tool,
            args,
            node.attempts,
            state.tool.policy.timeout,
        )
        state.job = job
        if self._listeners or GLOBAL_BUS.listeners:
            self._emit_node("started", state)
        return job

    def _lookup(self, ref: RefBase) -> Any:
        outputs = self._nodes[ref._ref_node].outputs
        assert outputs is not None
        return ref._ref_extract(outputs) if ref._ref_path else outputs

    def _on_done(self, job: NodeJob, outcome: NodeOutcome) -> None:
        state = self._nodes.get(job.node_id)
        if state is None or state.job is not job or state.is_finished:
            return  # a late outcome of a cancelled or superseded attempt
        state.job = None
        self._running -= 1
        if outcome.failure is None:
            node = state.node
            state.outputs = outcome.outputs
            node.status = _DONE
            node.finished_at = time.time()
            if self._listeners or GLOBAL_BUS.listeners:
                self._emit_node("done", state)
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
            if self._listeners or GLOBAL_BUS.listeners:
                self._emit_node(
                    "retrying",
                    state,
                    error=f"{failure.exc_type}: {failure.message}",
                    retry_in=delay,
                )
            self._loop.call_later(delay, self._retry, state)
            return
        error = ToolError(
            node_id=state.node.node_id,
            tool=state.node.tool,
            exc_type=failure.exc_type,
            message=failure.message,
            traceback=failure.traceback,
            run_id=self.run_id,
            attempts=job.attempt,
            original=failure.original,
        )
        if failure.original is not None:
            error.__cause__ = failure.original
        self._fail(state, error)

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

    def _skip(self, state: NodeState, failed: NodeState) -> None:
        upstream = failed.error
        if isinstance(upstream, ToolError):
            error: BaseException = ToolError(
                node_id=state.node.node_id,
                tool=state.node.tool,
                exc_type=upstream.exc_type,
                message=upstream.message,
                traceback=upstream.traceback,
                run_id=self.run_id,
                upstream=upstream.upstream or upstream.node_id,
            )
        else:
            error = upstream if upstream is not None else self._cancel_error()
        status = NodeStatus.SKIPPED if isinstance(upstream, ToolError) else NodeStatus.CANCELLED
        self._finish(state, status, error, status.value)  # type: ignore[arg-type]
        self._skip_dependents(state)

    def _skip_dependents(self, state: NodeState) -> None:
        stack = [state]
        while stack:
            current = stack.pop()
            for dependent in current.dependents:
                if not dependent.is_finished:
                    self._skip(dependent, current)
            current.dependents = []

    def _fill_slots(self) -> None:
        limit = self.max_concurrency
        ready = self._ready
        batch: list[NodeState] = []
        while ready and (limit is None or self._running + len(batch) < limit):
            batch.append(ready.popleft())
        if batch:
            self._dispatch(batch)

    def _finish(
        self, state: NodeState, status: NodeStatus, error: BaseException, kind: NodeEventType
    ) -> None:
        node = state.node
        node.status = status
        node.finished_at = time.time()
        state.error = error
        if isinstance(error, ToolError):
            node.error = error.to_dict()
        else:
            node.error = {"exc_type": type(error).__name__, "message": str(error)}
        if self._listeners or GLOBAL_BUS.listeners:
            self._emit_node(kind, state, error=str(error))
        state.mark_finished()
        self._finished_count += 1

    def _cancel_error(self) -> RunCancelledError:
        return RunCancelledError(self.run_id, self.cancel_reason or "cancelled")

    def _cancel_now(self, reason: str) -> None:
        if self.is_finished or self._cancelled:
            return
        self._drain()
        self._cancelled = True
        self.cancel_reason = reason
        error = self._cancel_error()
        self._ready.clear()
        for state in list(self._nodes.values()):
            if state.is_finished:
                continue
            job = state.job
            if job is not None:
                state.job = None
                self._running -= 1
                try:
                    self.executor.cancel(job)
                except Exception:
                    pass
            self._finish(state, NodeStatus.CANCELLED, error, "cancelled")
        self._maybe_finish()

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

    # -- events ---------------------------------------------------------------------------
    def _emit_node(
        self,
        kind: NodeEventType,
        state: NodeState,
        *,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        node = state.node
        event = NodeEvent(
            type=kind,
            run_id=self.run_id,
            graph_id=self.graph_id,
            node_id=node.node_id,
            tool=node.tool,
            status=node.status,
            attempt=node.attempts,
            ts=time.time(),
            duration=node.duration if kind in ("done", "failed") else None,
            error=error,
            retry_in=retry_in,
        )
        dispatch(self._listeners + GLOBAL_BUS.listeners, event)

    def _emit_run(self, kind: str) -> None:
        listeners = self._listeners + GLOBAL_BUS.listeners
        if not listeners:
            return
        error = str(self.failure) if self.failure else self.cancel_reason
        event = RunEvent(
            type=kind,  # type: ignore[arg-type]
            run_id=self.run_id,
            graph_id=self.graph_id,
            status=self.status,
            ts=time.time(),
            counts=self.graph.status_counts(),
            error=error if kind == "run_finished" else None,
        )
        dispatch(listeners, event)
