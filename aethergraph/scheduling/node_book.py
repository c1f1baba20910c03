"""The nodes of one run and how each of them ends: done, failed, skipped or cancelled.

:class:`NodeBook` is the bookkeeping half of a run's scheduler: the table of node states, the
graph they show in, and the terminal transitions every policy decision ends in (``_finish``,
skipping everything downstream of a failure, stopping whatever still runs). The policy half —
when a node runs, retries, or the run is cancelled — is :class:`~.scheduler.RunScheduler`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aethergraph.errors import RunCancelledError, ToolError
from aethergraph.execution.base import Executor
from aethergraph.graph.refs import RefBase
from aethergraph.graph.task_graph import NodeStatus, TaskGraph
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.scheduling.emitter import RunEmitter
from aethergraph.scheduling.events import Listener, NodeEventType
from aethergraph.scheduling.failures import skipped_error
from aethergraph.scheduling.node_state import NodeState, new_node
from aethergraph.scheduling.waiting import Waitable

log = logging.getLogger("aethergraph")


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

    def node(self, node_id: str) -> NodeState:
        return self._nodes[node_id]

    def _new_state(self, tool: ToolSpec, inputs: dict[str, Any], refs: list[RefBase]) -> NodeState:
        state = new_node(self, self._counters, tool, inputs, refs)
        self.graph.nodes[state.node.node_id] = state.node
        self._nodes[state.node.node_id] = state
        return state

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
        if self._emit.active:
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
