"""Lost messages: a message the broker no longer has is detected and its nodes sent again.

A published node normally ends with an outcome pushed by its worker, or — when it has a timeout —
with the client-side timeout backstop. A node *without* a timeout whose message disappears
(Redis restarted without persistence, a key evicted under ``maxmemory``, a flush) would wait for
ever. This check finds such messages where it costs nothing on the hot path:

* Every ``settings.lost_message_check`` seconds, and only while messages older than that are in
  flight, one pipelined round trip asks the broker for the delivery tags in kombu's ``unacked``
  hash (the messages workers hold: reserved or running, ``acks_late``; the client sets a
  message's tag to its task id) and the length of each queue such messages went to, plus this
  client's result list.
* A message is where it should be if a worker holds it — in kombu's unacked hash, or listed in a
  live worker's heartbeat (``held``: after a Redis restart without persistence the hash is
  empty, but the workers still run what they took) — or if its queue is not empty (it may be
  waiting there; the queue is never read, so a long queue costs nothing). It is *suspect* when its
  queue is empty, no worker holds it and no result is waiting to be read.
* A message suspect at two checks in a row is lost: the client, the source of truth for its
  graph, sends its nodes again (``recovery``; execution is at-least-once). Two strikes cover the
  moments in between (a worker has popped the message but not yet recorded it as unacked; a
  result was pushed just after the check read the result list). A node lost more than
  ``max_worker_kills`` times fails with ``NodeLostError``.

Limits, by design: a message in a queue that never empties is trusted to be there; a worker that
dies holding a message leaves it in ``unacked``, which ``orphans`` handles within seconds.
Nothing here adds a per-node round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from aethergraph.execution.celery.broker import BROKER_ERRORS
from aethergraph.execution.celery.discovery import held_by_live_workers
from aethergraph.execution.celery.inflight import InFlight
from aethergraph.execution.celery.recovery import Recovery
from aethergraph.keys import Keys
from aethergraph.settings import redact_url

log = logging.getLogger("aethergraph")


class LostMessages:
    """Periodically checks that old in-flight messages still exist in the broker."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        keys: Keys,
        results_key: str,
        table: InFlight,
        recovery: Recovery,
        interval: float,
        broker_url: str,
    ) -> None:
        self._client = client
        self._keys = keys
        self._results_key = results_key
        self._table = table
        self._recovery = recovery
        self.interval = interval
        self._broker = redact_url(broker_url)
        #: messages found lost so far (tests and diagnostics)
        self.lost = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except BROKER_ERRORS as exc:  # the listener and dispatcher handle outages
                log.debug("lost-message check skipped: %s", exc)

    async def check(self) -> None:
        """One check (see the module docstring)."""
        horizon = time.monotonic() - self.interval
        old = [m for m in self._table.sent.values() if m.sent_at <= horizon]
        if not old:
            return
        queues = sorted({m.queue for m in old})
        pipe = self._client.pipeline(transaction=False)
        pipe.hkeys(self._keys.celery_unacked())
        pipe.llen(self._results_key)
        for queue in queues:
            pipe.llen(queue)
        held_raw, results_waiting, *lengths = await pipe.execute()
        if results_waiting:
            return  # outcomes are still to be read: they may answer for the old messages
        held = {t.decode() if isinstance(t, bytes) else str(t) for t in held_raw}
        held |= await held_by_live_workers(self._client, self._keys)
        queued = {queue for queue, length in zip(queues, lengths, strict=True) if length}
        for message in old:
            if message.task_id in held or message.queue in queued:
                message.suspect = False
            elif not message.suspect:
                message.suspect = True
            elif self._table.sent.get(message.task_id) is message:
                self.lost += 1
                self._recovery.bring_back(
                    message,
                    why=f"lost: the message (queue {message.queue!r}) is gone from the broker "
                    f"{self._broker}: not queued, held by no worker, no outcome",
                    lost=True,
                )
