"""Results: outcomes pushed by the workers, popped in bursts, resolved into node outcomes.

Every worker pushes each finished attempt onto this client's result list
(``Keys.client_results``); one background task pops them — a blocking pop that takes a whole
burst at once (``BLMPOP`` on Redis >= 7) — and resolves the nodes: no per-task polling, no
``AsyncResult.get()``. An outcome carries ``started_at`` / ``finished_at``, the worker's clock
around the tool call, so a node's duration is its run time, not its time in the queue.

**Timeout backstop.** A node with a timeout is timed out by its worker; if that report never
comes (the worker died hard, the message was lost), the client fails the node
``TIMEOUT_GRACE`` seconds after its timeout — counted from the moment the worker reported that
the tool *started* (a ``started`` message), not from publishing, since the node may wait in a
queue for a long time.

**Handbacks.** A worker that cannot finish a message — its pool process died running it, or it
is stopping and the grace period ran out — pushes a *handback* instead of an outcome for each of
the message's nodes; the listener passes the message to ``recovery``, which sends the nodes
still awaited again (counting a death against the running node unless the worker was stopping).

**Broker outage.** The listener rides out broker errors (see ``broker``); when the broker stays
unreachable beyond ``broker_outage_timeout``, no outcome can arrive, so every node in flight
fails with ``BrokerUnavailableError`` rather than waiting for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from aethergraph import codec, jsontext
from aethergraph.accepted_types import signature_types
from aethergraph.errors import NodeTimeoutError
from aethergraph.execution.base import NodeFailure, NodeOutcome, failure_from, tell_running
from aethergraph.execution.celery.broker import BROKER_ERRORS, Outage
from aethergraph.execution.celery.inflight import InFlight, Pending
from aethergraph.execution.celery.messages import TIMEOUT_GRACE
from aethergraph.execution.celery.recovery import Recovery
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph")

DRAIN = 256  # results popped per round trip after a blocking pop returned
POP_WAIT = 5  # seconds one blocking pop waits


def _epoch(value: Any) -> float | None:
    """A worker's wall-clock stamp, or None if the message has none (hot: twice per outcome)."""
    cls = type(value)
    if cls is float:  # what time.time() sends: the common case, checked first
        return value  # type: ignore[no-any-return]
    return float(value) if cls is int else None


class ResultListener:
    """Pops this client's result list and settles the nodes in flight."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        results_key: str,
        blmpop: bool,
        table: InFlight,
        recovery: Recovery,
        settings: Settings,
        revoke: Callable[[str], None],
        stats: dict[str, int],
    ) -> None:
        self._client = client
        self._key = results_key
        #: this client's result list, then those of dead clients whose runs it resumed
        self._keys = [results_key]
        self._blmpop = blmpop
        self._table = table
        self._recovery = recovery
        self._revoke = revoke
        self._stats = stats
        self._outage = Outage(settings.broker_url or "", settings.broker_outage_timeout)

    async def run(self) -> None:
        while True:
            try:
                raws = await self._pop()
            except BROKER_ERRORS as exc:
                if self._outage.failed():
                    self._fail_in_flight(self._outage.error(exc, "waiting for node results"))
                    self._outage.clear()
                else:
                    log.warning(
                        "result listener: broker %s: %s; retrying", self._outage.broker, exc
                    )
                    await asyncio.sleep(self._outage.pause())
                continue
            self._outage.clear()
            for raw in raws:
                self.on_result(raw)

    def adopt(self, results_key: str) -> bool:
        """Pop another client's result list too (its runs' nodes were adopted: ``resume.py``);
        False if it is popped already."""
        if results_key in self._keys:
            return False
        self._keys.append(results_key)
        return True

    async def _pop(self) -> list[Any]:
        client = self._client
        keys = list(self._keys)
        if self._blmpop:  # Redis >= 7: a burst in the same round trip
            popped = await client.blmpop(POP_WAIT, len(keys), *keys, direction="LEFT", count=DRAIN)
            return [] if popped is None else list(popped[1])
        item = await client.blpop(keys, timeout=POP_WAIT)
        if item is None:
            return []
        raws = [item[1]]
        if len(self._table) > 1:  # a burst may be waiting: take it too
            more = await client.lpop(item[0], DRAIN)
            if isinstance(more, list):
                raws.extend(more)
        return raws

    def _fail_in_flight(self, exc: BaseException) -> None:
        for outcome_id in list(self._table.pending):
            pending, _ = self._table.pop(outcome_id)
            if pending is not None:
                pending.on_done(pending.job, NodeOutcome(failure=failure_from(exc)))

    def on_result(self, raw: bytes | str) -> None:
        self._stats["results"] += 1
        self._stats["result_bytes"] += len(raw)
        try:
            message = jsontext.loads(raw)
        except ValueError:
            log.warning("dropping malformed result message %r", raw[:200])
            return
        task_id = str(message.get("task_id", ""))
        if message.get("started"):  # a worker began the tool (worker/started.py)
            self._started(task_id, _epoch(message.get("at")))
            return
        back = message.get("handback")
        if back is not None:
            self._handed_back(task_id, back)
            return
        pending, _ = self._table.pop(task_id)
        if pending is None:
            return  # an attempt we gave up on (cancelled, timed out, lost)
        started = _epoch(message.get("started_at"))
        finished = _epoch(message.get("finished_at"))
        failure = message.get("failure")
        if failure:
            outcome = NodeOutcome(
                failure=NodeFailure.from_dict(failure), started_at=started, finished_at=finished
            )
        else:
            try:
                outputs = codec.decode(
                    message.get("outputs") or {}, accepted=signature_types(pending.job.tool.fn)
                )
                outcome = NodeOutcome(outputs, started_at=started, finished_at=finished)
            except Exception as exc:
                outcome = NodeOutcome(
                    failure=failure_from(exc), started_at=started, finished_at=finished
                )
        pending.on_done(pending.job, outcome)

    def _handed_back(self, outcome_id: str, back: Any) -> None:
        """A worker gave a message back (see the module docstring)."""
        pending = self._table.pending.get(outcome_id)
        if pending is None:
            return  # settled, or its message was brought back for an earlier node already
        back = back if isinstance(back, dict) else {}
        worker = str(back.get("worker") or "an unnamed worker")
        why = f"worker {worker} handed it back: {back.get('reason') or 'no reason given'}"
        killed = worker if back.get("killed") else None
        self._recovery.bring_back(pending.message, why=why, killed_by=killed)

    def _started(self, task_id: str, at: float | None) -> None:
        """The node is running: tell its scheduler, and arm a timed tool's backstop now."""
        started: Pending | None = self._table.pending.get(task_id)
        if started is None:
            return  # settled already (a notice may trail its outcome)
        job = started.job
        if job.timeout and started.timer is None:
            started.timer = asyncio.get_running_loop().call_later(
                job.timeout + TIMEOUT_GRACE, self._time_out, task_id
            )
        tell_running(job, at or time.time())

    def _time_out(self, task_id: str) -> None:
        pending, message = self._table.pop(task_id)
        if pending is None:
            return
        if message is not None:
            self._revoke(message.task_id)
        job = pending.job
        exc = NodeTimeoutError(f"tool {job.tool.name!r} exceeded its timeout of {job.timeout}s")
        pending.on_done(job, NodeOutcome(failure=failure_from(exc)))
