"""Recovery: the nodes of a message that will not report are sent again — the client decides.

The client is the source of truth for its graph: it knows every node it published and which
message carries it (``inflight``). When a message will never bring its outcomes — its worker
died holding it (``orphans``), the worker's pool process died running it or the worker stopped
and handed it back (a *handback* outcome from the worker), or the broker lost it (``lost``) —
:meth:`Recovery.bring_back` takes the nodes the message still carries out of the table and
publishes them again through the dispatcher, as a fresh message with fresh outcome ids:

* nodes that already reported keep their first outcome (they are no longer carried), so a pack
  that died at its 40th node re-sends the other 24, not all 64;
* a late outcome of the old message (a worker that was only slow, not dead) is ignored, like any
  outcome of an attempt given up on: execution is at-least-once, the first outcome counted wins;
* a re-send is not a retry: the tool's ``retries`` are for its own failures, and the node keeps
  its attempt number.

**Poison nodes.** A node whose execution kills its worker would otherwise kill the pool for
ever. Each death is counted against the node that was *running* — the one node of a single
message, the first node still carried by a pack (a pack runs its nodes one after another) —
and after ``settings.max_worker_kills`` deaths the node fails with a
:class:`~aethergraph.errors.WorkerKilledError` naming the node and the workers (Dask's
``KilledWorker``). Deaths during a graceful stop are not counted, nor are messages the broker
lost; those are re-sent up to the same number of times and then fail with
:class:`~aethergraph.errors.NodeLostError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aethergraph.errors import NodeLostError, WorkerKilledError
from aethergraph.execution.base import (
    DoneCallback,
    NodeJob,
    NodeOutcome,
    failure_from,
    tell_running,
)
from aethergraph.execution.celery.inflight import InFlight, Sent

log = logging.getLogger("aethergraph")

#: publishes nodes again, at the front of their queue (the dispatcher's ``submit``)
Resubmit = Callable[[Sequence[NodeJob], DoneCallback], None]


def _index(outcome_id: str) -> int:
    """A node's place in its message: the index of ``<pack id>.<index>``, 0 for a single node."""
    _, dot, index = outcome_id.rpartition(".")
    return int(index) if dot and index.isdigit() else 0


class _History:
    """What happened to one node's messages so far."""

    __slots__ = ("killed", "lost")

    def __init__(self) -> None:
        self.killed: list[str] = []  # the workers that died running it
        self.lost = 0  # its messages the broker lost


class Recovery:
    """Sends again the nodes of messages that will not report (see the module docstring)."""

    def __init__(
        self,
        *,
        table: InFlight,
        resubmit: Resubmit,
        in_flight: Callable[[str], bool],
        max_kills: int,
    ) -> None:
        self._table = table
        self._resubmit = resubmit
        self._in_flight = in_flight  # is the node of this job key still awaited or unsent?
        self.max_kills = max_kills
        self._history: dict[str, _History] = {}  # job key -> its history (while in flight)
        #: nodes sent again so far (tests and diagnostics)
        self.recovered = 0

    def bring_back(
        self, message: Sent, *, why: str, killed_by: str | None = None, lost: bool = False
    ) -> None:
        """Publish again the nodes ``message`` still carries; ``why`` is logged.

        ``killed_by``: the worker that died while running the message's first carried node
        (counted against that node); ``None`` when no death is to blame (a graceful stop).
        ``lost``: the broker lost the message (counted against each of its nodes).
        """
        self._forget_settled()
        pending = self._table.pending
        carried = sorted((o for o in message.awaited if o in pending), key=_index)
        nodes = [pending[outcome_id] for outcome_id in carried]
        self._table.drop_message(message)
        again: dict[int, tuple[DoneCallback, list[NodeJob]]] = {}
        for position, node in enumerate(nodes):
            job = node.job
            history = self._history.setdefault(job.key, _History())
            failure: Exception | None = None
            if lost:
                history.lost += 1
                if history.lost > self.max_kills:
                    failure = NodeLostError(
                        f"the broker lost the Celery message of node {job.node_id!r} (tool "
                        f"{job.tool.name!r}) {history.lost} times; it is failed instead of being "
                        "sent again (is Redis evicting keys under maxmemory, or restarting "
                        "without persistence?)"
                    )
            elif killed_by is not None and position == 0:
                history.killed.append(killed_by)
                if len(history.killed) >= self.max_kills:
                    failure = WorkerKilledError(
                        f"node {job.node_id!r} (tool {job.tool.name!r}) was running when its "
                        f"worker died, {len(history.killed)} times (workers: "
                        f"{', '.join(history.killed)}); it is failed instead of being sent again."
                        " Look for a crash, an out-of-memory kill or os._exit in the tool; set "
                        "AETHERGRAPH_MAX_WORKER_KILLS to allow more deaths"
                    )
            if failure is not None:
                self._history.pop(job.key, None)
                node.on_done(job, NodeOutcome(failure=failure_from(failure, retryable=False)))
                continue
            entry = again.setdefault(id(node.on_done), (node.on_done, []))
            entry[1].append(job)
        sent = sum(len(jobs) for _, jobs in again.values())
        if sent:
            self.recovered += sent
            log.warning(
                "%s: sending %d node(s) of message %s again (%s)",
                why,
                sent,
                message.task_id,
                ", ".join(job.node_id for _, jobs in again.values() for job in jobs[:5])
                + (", ..." if sent > 5 else ""),
            )
        for on_done, jobs in again.values():
            for job in jobs:  # they wait again: no longer running (a new notice will come)
                tell_running(job, None)
            self._resubmit(jobs, on_done)

    def _forget_settled(self) -> None:
        """Drop the history of nodes no longer in flight (settled or cancelled)."""
        in_flight = self._in_flight
        for key in [key for key in self._history if not in_flight(key)]:
            del self._history[key]
