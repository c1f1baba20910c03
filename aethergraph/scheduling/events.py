"""Events of runs and nodes, for progress bars, dashboards and tests.

Subscribe for every run with :func:`subscribe`, or for one run with ``run(..., on_event=f)``.
Listeners are called on the runtime thread, synchronously and in order, so they must be quick
(hand heavy work to a queue); an exception in a listener is logged and does not affect the run.
When nobody listens, no event object is even built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aethergraph.errors import ConfigurationTypeError
from aethergraph.graph.task_graph import NodeStatus

log = logging.getLogger("aethergraph")

#: ``started``: the node was handed to its executor; ``running``: a worker began its tool, told
#: by executors where a started node may wait first (Celery: a queue, a worker's prefetch)
NodeEventType = Literal[
    "added", "started", "running", "retrying", "done", "failed", "skipped", "cancelled"
]
RunEventType = Literal["run_started", "run_finished"]


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something happened to one node."""

    type: NodeEventType
    run_id: str
    graph_id: str
    node_id: str
    tool: str
    status: NodeStatus
    attempt: int
    ts: float
    duration: float | None = None
    error: str | None = None
    retry_in: float | None = None
    #: a ``done`` node that did not run: ``"cached"`` (``@tool(cache=True)``)
    reused: str | None = None


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A run started or finished (``status``: running, done, failed or cancelled)."""

    type: RunEventType
    run_id: str
    graph_id: str
    status: str
    ts: float
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


Event = NodeEvent | RunEvent
Listener = Callable[[Any], None]


class EventBus:
    """A list of listeners with safe dispatch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        if not callable(listener):
            raise ConfigurationTypeError(
                f"event listener must be callable (it is called with each event), got "
                f"{listener!r} of type {type(listener).__name__}; pass a function or a callable "
                "object."
            )
        with self._lock:
            self.listeners = (*self.listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(fn for fn in self.listeners if fn is not listener)

        return unsubscribe


GLOBAL_BUS = EventBus()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every event of every run; returns an unsubscribe function."""
    return GLOBAL_BUS.subscribe(listener)


def dispatch(listeners: tuple[Listener, ...], event: Event) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("event listener %r failed on %s", listener, event.type)
