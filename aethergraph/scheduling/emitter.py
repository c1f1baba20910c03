"""Building and sending one run's events (no event object is built when nobody listens)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aethergraph.graph.task_graph import TaskNode
from aethergraph.scheduling.events import (
    GLOBAL_BUS,
    Listener,
    NodeEvent,
    NodeEventType,
    RunEvent,
    RunEventType,
    dispatch,
)

if TYPE_CHECKING:
    from aethergraph.scheduling.scheduler import RunScheduler


class RunEmitter:
    """Sends the events of one run to its own listener and to the global bus."""

    __slots__ = ("graph_id", "listeners", "run_id")

    def __init__(self, run_id: str, graph_id: str, on_event: Listener | None) -> None:
        self.run_id = run_id
        self.graph_id = graph_id
        self.listeners: tuple[Listener, ...] = (on_event,) if on_event else ()

    @property
    def active(self) -> bool:
        """Is anybody listening? Checked before building an event: when nobody listens, no
        event object is built. (The hot path reads ``listeners or GLOBAL_BUS.listeners``
        directly — the same test, without a call.)"""
        return bool(self.listeners or GLOBAL_BUS.listeners)

    def node(
        self,
        kind: NodeEventType,
        node: TaskNode,
        *,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> None:
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
            reused=node.reused,
        )
        dispatch(self.listeners + GLOBAL_BUS.listeners, event)

    def run(self, kind: RunEventType, run: RunScheduler) -> None:
        listeners = self.listeners + GLOBAL_BUS.listeners
        if listeners:
            error = str(run.failure) if run.failure else run.cancel_reason
            event = RunEvent(
                type=kind,
                run_id=self.run_id,
                graph_id=self.graph_id,
                status=run.status,
                ts=time.time(),
                counts=run.graph.status_counts(),
                error=error if kind == "run_finished" else None,
            )
            dispatch(listeners, event)
