"""The table of published nodes: what the executor still awaits an outcome for.

Executor state stays here, keyed by the job's key and by the node's *outcome id* (the Celery
task id of a single-node message, ``<pack id>.<index>`` for a packed node) — never on the
``NodeJob``. A :class:`Sent` is one Celery message, a node or a whole pack: the unit a revoke
stops and the lost-message check looks for in the broker.

Removing a node (:meth:`InFlight.pop`) is the one way out of the table, whatever the reason —
its outcome arrived, it timed out, it was cancelled, its message was lost — so the follow
reference count and the timeout timer are released in exactly one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aethergraph.execution.base import DoneCallback, NodeJob


class Sent:
    """One published Celery message and the outcome ids of its nodes still awaited."""

    __slots__ = ("awaited", "queue", "sent_at", "suspect", "task_id")

    def __init__(self, task_id: str, queue: str) -> None:
        self.task_id = task_id
        self.queue = queue
        self.sent_at = time.monotonic()
        self.awaited: set[str] = set()
        #: the last lost-message check found it neither queued nor held by a worker
        self.suspect = False


class Pending:
    """One published node awaiting its outcome."""

    __slots__ = ("job", "message", "on_done", "timer")

    def __init__(self, job: NodeJob, on_done: DoneCallback, message: Sent) -> None:
        self.job = job
        self.on_done = on_done
        self.message = message
        self.timer: asyncio.TimerHandle | None = None


class InFlight:
    """Published nodes by outcome id and by job key; published messages by task id."""

    def __init__(self, hold: Callable[[str, int], None], release: Callable[[str], None]) -> None:
        self._hold = hold  # a run has n more nodes in flight (follow its live messages)
        self._release = release  # ... one fewer
        self.pending: dict[str, Pending] = {}  # outcome id -> node
        self.outcome_of: dict[str, str] = {}  # job key -> outcome id
        self.sent: dict[str, Sent] = {}  # task id -> message

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, message: Sent, nodes: Sequence[tuple[str, NodeJob, DoneCallback]]) -> None:
        """A published message and the nodes it carries, by outcome id (hot: once per message,
        so the per-message bookkeeping is done once, not once per packed node)."""
        pending, outcome_of = self.pending, self.outcome_of
        runs: dict[str, int] = {}
        for outcome_id, job, on_done in nodes:
            pending[outcome_id] = Pending(job, on_done, message)
            outcome_of[job.key] = outcome_id
            run_id = job.run_id
            runs[run_id] = runs.get(run_id, 0) + 1
        message.awaited.update(outcome_id for outcome_id, _, _ in nodes)
        self.sent[message.task_id] = message
        for run_id, count in runs.items():
            self._hold(run_id, count)

    def pop(self, outcome_id: str) -> tuple[Pending | None, Sent | None]:
        """Forget a node. Returns it (``None`` if it was not awaited) and, if it was the last
        node its message carried, that message (which then has nothing left to do)."""
        pending = self.pending.pop(outcome_id, None)
        if pending is None:
            return None, None
        job, message = pending.job, pending.message
        if self.outcome_of.get(job.key) == outcome_id:
            del self.outcome_of[job.key]
        if pending.timer is not None:
            pending.timer.cancel()
        self._release(job.run_id)
        message.awaited.discard(outcome_id)
        if message.awaited:
            return pending, None
        self.sent.pop(message.task_id, None)
        return pending, message

    def pop_job(self, job_key: str) -> tuple[Pending | None, Sent | None]:
        """:meth:`pop` by job key."""
        outcome_id = self.outcome_of.get(job_key)
        if outcome_id is None:
            return None, None
        return self.pop(outcome_id)

    def drop_message(self, message: Sent) -> list[Pending]:
        """Forget every node a message still carries (its publish failed, or it was lost)."""
        return [p for p in (self.pop(o)[0] for o in list(message.awaited)) if p is not None]
