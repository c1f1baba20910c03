"""The nodes of one run and how each of them ends: done, failed, skipped or cancelled.

:class:`NodeBook` is the bookkeeping half of a run's scheduler: the table of node states, the
graph they show in, and the terminal transitions every policy decision ends in (``_finish``,
skipping everything downstream of a failure, stopping whatever still runs). The policy half —
when a node runs, retries, or the run is cancelled — is :class:`~.scheduler.RunScheduler`.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

from aethergraph.errors import RunCancelledError, RuntimeUsageError, ToolError
from aethergraph.execution.base import Executor, NodeJob, RunningCallback
from aethergraph.graph.refs import ATOMIC_TYPES, RefBase, RefSpec, substitute
from aethergraph.graph.task_graph import NodeStatus, TaskGraph, TaskNode
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.scheduling.emitter import RunEmitter
from aethergraph.scheduling.events import GLOBAL_BUS, Listener, NodeEventType
from aethergraph.scheduling.failures import skipped_error
from aethergraph.scheduling.node_state import NodeState, RunRef
from aethergraph.scheduling.waiting import Waitable

log = logging.getLogger("aethergraph")


def _as_spec(ref: RefBase) -> RefSpec:
    return RefSpec(ref._ref_node, ref._ref_path)


def _running_hook(book: NodeBook) -> RunningCallback:
    """``job.on_running`` for ``book``'s jobs. It holds the book weakly: a job left in an
    executor's table (a cancelled attempt, say) must not keep a finished run alive."""
    ref = weakref.ref(book)

    def on_running(job: NodeJob, at: float | None) -> None:
        alive = ref()
        if alive is not None:
            alive._on_running(job, at)

    return on_running


class NodeBook(Waitable):
    """A run's node states, its graph, and the ways a node can end."""

    def __init__(self, graph: TaskGraph, executor: Executor, on_event: Listener | None) -> None:
        super().__init__()
        self.run_id = graph.run_id or uuid.uuid4().hex
        graph.run_id = self.run_id
        self.graph = graph
        self.graph_id = graph.graph_id
        self.executor = executor
        self.cancel_reason: str | None = None
        self._emit = RunEmitter(self.run_id, self.graph_id, on_event)
        self._nodes: dict[str, NodeState] = {}
        self._counters: dict[str, Iterator[int]] = {}
        self._running = 0  # nodes handed to the executor and not yet settled
        self._finished_count = 0
        #: for executors where a submitted node may wait before it runs: a node is *sent*
        #: (status running, ``started_at`` None) until the executor reports it running
        self._running_hook = _running_hook(self) if executor.reports_running else None

    def node(self, node_id: str) -> NodeState:
        return self._nodes[node_id]

    def _new_state(self, tool: ToolSpec, inputs: dict[str, Any], refs: list[RefBase]) -> NodeState:
        """A new node for ``tool(**inputs)``, whose inputs hold ``refs``, in the table and graph.

        Node ids count per tool (``square_0``, ``square_1``, ...); the node's edges are the
        nodes its refs name, which must belong to this run; the graph's copy of the inputs holds
        plain :class:`RefSpec` where the call held live refs.
        """
        counter = self._counters.get(tool.name)
        if counter is None:
            counter = self._counters[tool.name] = itertools.count()
        node_id = f"{tool.name}_{next(counter)}"
        deps: tuple[str, ...] = ()
        shown = inputs
        if refs:
            seen: dict[str, None] = {}
            for ref in refs:
                if not isinstance(ref, RunRef) or ref._run is not self:
                    raise RuntimeUsageError(
                        f"tool {tool.name!r} was given {ref._ref_describe()}, a reference that "
                        "does not belong to this run; pass values (await them) between runs, "
                        "handles within one"
                    )
                seen[ref._ref_node] = None
            deps = tuple(seen)
            # one pass over the arguments: refs passed directly (the usual case) are replaced
            # here, only containers go through the recursive substitute
            shown = {
                name: _as_spec(value)
                if isinstance(value, RefBase)
                else value
                if type(value) in ATOMIC_TYPES
                else substitute(value, _as_spec)
                for name, value in inputs.items()
            }
        node = TaskNode(
            node_id, tool.name, tool.version, shown, deps, tool.policy.queue, time.time()
        )
        state = NodeState(node, tool, inputs, refs)
        self.graph.nodes[node_id] = node
        self._nodes[node_id] = state
        return state

    def _on_running(self, job: NodeJob, at: float | None) -> None:
        """The executor reports that ``job``'s tool began at ``at`` — or, with ``None``, that
        it sent the node again (its worker died) and it waits once more (on the runtime loop)."""
        state = self._nodes.get(job.node_id)
        if state is None or state.job is not job or state.is_finished:
            return  # a notice for an attempt that is over
        node = state.node
        if at is None:
            if node.started_at is not None:
                node.started_at = None
                if self._emit.listeners or GLOBAL_BUS.listeners:
                    self._emit.node("started", node)  # sent again: queued until it runs
        elif node.started_at is None:
            node.started_at = at
            if self._emit.listeners or GLOBAL_BUS.listeners:
                self._emit.node("running", node)

    def _cancel_error(self) -> RunCancelledError:
        return RunCancelledError(self.run_id, self.cancel_reason or "cancelled")

    def _finish(
        self, state: NodeState, status: NodeStatus, error: BaseException, kind: NodeEventType
    ) -> None:
        node = state.node
        node.status = status
        node.finished_at = time.time()
        state.error = error
        state.cell = state.args = None
        state.refs = []
        if isinstance(error, ToolError):
            node.error = error.to_dict()
        else:
            node.error = {"exc_type": type(error).__name__, "message": str(error)}
        if self._emit.listeners or GLOBAL_BUS.listeners:
            self._emit.node(kind, node, error=str(error))
        state.mark_finished()
        self._finished_count += 1

    def _skip(self, state: NodeState, failed: NodeState) -> None:
        upstream = failed.error
        if isinstance(upstream, ToolError):
            error: BaseException = skipped_error(self.run_id, state, upstream)
            status = NodeStatus.SKIPPED
        else:
            error = upstream if upstream is not None else self._cancel_error()
            status = NodeStatus.CANCELLED
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

    def _stop_all(self, error: BaseException) -> None:
        """Finish every unfinished node as cancelled with ``error``; stop the running ones."""
        for state in list(self._nodes.values()):
            if state.is_finished:
                continue
            job = state.job
            if job is not None:
                state.job = None
                self._running -= 1
                try:
                    self.executor.cancel(job)
                except Exception:  # the node is cancelled here either way; say why it may run
                    log.exception("could not stop node %s on %s", job.key, self.executor.name)
            self._finish(state, NodeStatus.CANCELLED, error, "cancelled")
