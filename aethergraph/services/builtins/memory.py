"""``context.memory()``: a run-scoped, append-only event log shared by every node of a run.

Nodes record what happened (``record("decision", {...})``) and later nodes read the recent past
(``recent(5)``). Events get a per-run ``seq`` so order is well defined even across threads and,
with a shared backend, across worker processes. Data stays JSON-compatible for that reason.

Bad arguments of ``record`` / ``recent`` raise :class:`~aethergraph.errors.ServiceUsageError`;
a bad backend setting (``max_events_per_run=0``) is a ``ConfigurationError``, found at start-up.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from aethergraph.errors import ConfigurationError, ServiceUsageError


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    """One recorded event; ``seq`` is unique and increasing within its run, starting at 1."""

    run_id: str
    graph_id: str
    node_id: str
    kind: str
    data: Any
    ts: float
    seq: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict, the wire form used by non-local backends."""
        return {
            "run_id": self.run_id,
            "graph_id": self.graph_id,
            "node_id": self.node_id,
            "kind": self.kind,
            "data": self.data,
            "ts": self.ts,
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryEvent:
        """Rebuild an event from :meth:`to_dict` output."""
        return cls(
            run_id=str(data["run_id"]),
            graph_id=str(data["graph_id"]),
            node_id=str(data["node_id"]),
            kind=str(data["kind"]),
            data=data.get("data"),
            ts=float(data["ts"]),
            seq=int(data["seq"]),
        )


class MemoryBackend(ABC):
    """Process-wide store of the event logs of all runs."""

    @abstractmethod
    async def append(
        self, *, run_id: str, graph_id: str, node_id: str, kind: str, data: Any
    ) -> MemoryEvent:
        """Append an event, assigning its ``seq`` (per run, from 1) and ``ts``."""

    @abstractmethod
    async def recent(self, run_id: str, n: int = 20, kind: str | None = None) -> list[MemoryEvent]:
        """The last ``n`` events of the run (only of ``kind`` if given), oldest first."""

    @abstractmethod
    def snapshot(self, run_id: str) -> list[MemoryEvent]:
        """All retained events of the run, oldest first (sync: for inspection after a run)."""

    @abstractmethod
    async def clear(self, run_id: str) -> None:
        """Forget every event of the run."""


class _RunLog:
    __slots__ = ("events", "next_seq")

    def __init__(self, max_events: int) -> None:
        self.events: deque[MemoryEvent] = deque(maxlen=max_events)
        self.next_seq = 1


class InMemoryMemoryBackend(MemoryBackend):
    """Per-process memory, bounded so long-lived processes do not grow without limit.

    Each run keeps at most ``max_events_per_run`` events (oldest dropped, ``seq`` keeps counting)
    and at most ``max_runs`` runs are kept (the least recently created run is dropped). A
    ``threading.Lock`` guards everything because nodes run on several threads and event loops.
    """

    def __init__(self, *, max_events_per_run: int = 10_000, max_runs: int = 256) -> None:
        for label, value in (("max_events_per_run", max_events_per_run), ("max_runs", max_runs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"InMemoryMemoryBackend({label}=...) must be an int >= 1, got {value!r}."
                )
        self.max_events_per_run = max_events_per_run
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _RunLog] = OrderedDict()

    def _append_sync(
        self, run_id: str, graph_id: str, node_id: str, kind: str, data: Any
    ) -> MemoryEvent:
        with self._lock:
            log = self._runs.get(run_id)
            if log is None:
                log = self._runs[run_id] = _RunLog(self.max_events_per_run)
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
            event = MemoryEvent(
                run_id=run_id,
                graph_id=graph_id,
                node_id=node_id,
                kind=kind,
                data=data,
                ts=time.time(),
                seq=log.next_seq,
            )
            log.next_seq += 1
            log.events.append(event)
            return event

    async def append(
        self, *, run_id: str, graph_id: str, node_id: str, kind: str, data: Any
    ) -> MemoryEvent:
        return self._append_sync(run_id, graph_id, node_id, kind, data)

    async def recent(self, run_id: str, n: int = 20, kind: str | None = None) -> list[MemoryEvent]:
        picked: list[MemoryEvent] = []
        if n < 1:
            return picked
        with self._lock:  # walk backwards so a short read of a long log stays cheap
            log = self._runs.get(run_id)
            for event in reversed(log.events if log is not None else ()):
                if kind is None or event.kind == kind:
                    picked.append(event)
                    if len(picked) == n:
                        break
        picked.reverse()
        return picked

    def snapshot(self, run_id: str) -> list[MemoryEvent]:
        with self._lock:
            log = self._runs.get(run_id)
            return list(log.events) if log is not None else []

    async def clear(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def run_ids(self) -> list[str]:
        """Runs currently retained, oldest created first."""
        with self._lock:
            return list(self._runs)


def _copy_json(data: Any, kind: str) -> Any:
    """A JSON round-tripped copy, so later mutation by the caller cannot rewrite history."""
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ServiceUsageError(
            f"memory().record({kind!r}, data) needs JSON-compatible data, got "
            f"{type(data).__name__} ({exc}); record plain dicts/lists/str/numbers, or save the "
            "object with context.artifacts() and record its URI."
        ) from exc


class Memory:
    """What ``context.memory()`` returns: the run's shared log, as seen from one node."""

    def __init__(self, backend: MemoryBackend, *, run_id: str, graph_id: str, node_id: str) -> None:
        self._backend = backend
        self.run_id = run_id
        self.graph_id = graph_id
        self.node_id = node_id

    async def record(self, kind: str, data: Any = None) -> MemoryEvent:
        """Append an event of ``kind`` (a label such as ``"observation"``) to the run's log."""
        if not isinstance(kind, str) or not kind:
            raise ServiceUsageError(
                f"memory().record() needs a non-empty str kind, got {kind!r}; "
                'pass a label such as record("observation", data).'
            )
        return await self._backend.append(
            run_id=self.run_id,
            graph_id=self.graph_id,
            node_id=self.node_id,
            kind=kind,
            data=_copy_json(data, kind),
        )

    async def recent(self, n: int = 20, kind: str | None = None) -> list[MemoryEvent]:
        """The last ``n`` events of this run (only of ``kind`` if given), oldest first."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise ServiceUsageError(f"memory().recent(n) needs an int n, got {type(n).__name__}.")
        if n < 1:
            raise ServiceUsageError(
                f"memory().recent(n) needs n >= 1, got {n}; use snapshot() for every event."
            )
        if kind is not None and not isinstance(kind, str):
            raise ServiceUsageError(
                f"memory().recent(kind=...) must be a str or None, got {type(kind).__name__}."
            )
        return await self._backend.recent(self.run_id, n, kind)

    def snapshot(self) -> list[MemoryEvent]:
        """Every retained event of this run, oldest first."""
        return self._backend.snapshot(self.run_id)


__all__ = ["InMemoryMemoryBackend", "Memory", "MemoryBackend", "MemoryEvent"]
