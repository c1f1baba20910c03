"""Orphans: messages held by a worker that died, found within seconds and taken back.

With ``acks_late`` a message stays in kombu's unacked hash (``Keys.celery_unacked``) while a
worker holds it; kombu alone puts it back only when its visibility timeout (an hour by default)
has passed — a SIGKILLed worker, an OOM-killed host or a preempted node would strand its nodes
for that long. Instead:

* a live worker re-scores the messages it holds in kombu's unacked index on every heartbeat,
  with the broker's clock (``execution/worker/heartbeat.py``), so a score is the last time the
  holder was seen alive;
* every :data:`CHECK_EVERY` seconds, while this client has messages in flight, one script asks
  the broker for the namespace's messages scored more than :data:`ORPHAN_AFTER` seconds ago
  (three missed beats: the worker is dead or cut off); this client *claims* those that are its
  own — removed from the unacked hash and index in one atomic script, only if still stale, so a
  worker's late acknowledgement, kombu's own sweep or another client never races it — and
  :class:`~aethergraph.execution.celery.recovery.Recovery` sends their nodes again.

So a dead worker's nodes run again within about ``ORPHAN_AFTER + CHECK_EVERY`` seconds (≈ 7 s),
whatever the visibility timeout, which stays as the backstop for messages of clients that are
gone too. The same check reads the live workers' ``held`` lists so that a death can be blamed on
a named worker, and never claims a message a live worker still lists (a worker whose beats were
delayed). After the broker was unreachable, claims wait :data:`ORPHAN_AFTER` seconds of contact,
so workers get to re-score their messages before any is taken for dead.
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
from aethergraph.execution.wire import HEARTBEAT_TTL
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph")

ORPHAN_AFTER = HEARTBEAT_TTL  # seconds without a re-score: the holder is dead
CHECK_EVERY = 1.0  # seconds between two checks while messages are in flight
SCAN_LIMIT = 1000  # stale messages looked at per check
#: how far back a check looks: a message of ours goes stale at most one check before it is
#: seen, unless this client lost the broker for longer — beyond the outage bound, when its
#: nodes have failed anyway. Older stale messages are other (dead) clients'; kombu's sweep
#: takes them, and the window keeps them from filling the scan.
WINDOW = 600.0

#: the namespace's messages scored between (broker clock - ARGV[1] - ARGV[3]) and
#: (broker clock - ARGV[1]); at most ARGV[2] of them
_STALE = """
local t = redis.call('TIME')
local ceil = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[1])
local floor = ceil - tonumber(ARGV[3])
return redis.call('ZRANGEBYSCORE', KEYS[2], floor, ceil, 'LIMIT', 0, tonumber(ARGV[2]))
"""

#: remove the messages ARGV[2..] from kombu's unacked hash and index if still stale
_CLAIM = """
local t = redis.call('TIME')
local ceil = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[1])
local claimed = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score and tonumber(score) <= ceil then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[1], ARGV[i])
    claimed[#claimed + 1] = ARGV[i]
  end
end
return claimed
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Orphans:
    """Finds this client's messages whose holder died and hands them to recovery."""

    def __init__(
        self, *, client: aioredis.Redis, keys: Keys, table: InFlight, recovery: Recovery
    ) -> None:
        self._client = client
        self._keys = keys
        self._table = table
        self._recovery = recovery
        self._stale = client.register_script(_STALE)
        self._claim = client.register_script(_CLAIM)
        self._holders: dict[str, str] = {}  # delivery tag -> the live worker that listed it
        self._calm_since = time.monotonic()  # the broker has answered since then
        #: messages taken back from dead workers so far (tests and diagnostics)
        self.claimed = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                await self.check()
            except BROKER_ERRORS as exc:  # the listener and dispatcher handle outages
                self._calm_since = time.monotonic()
                log.debug("orphan check skipped: %s", exc)

    async def check(self) -> None:
        """One check (see the module docstring)."""
        if not self._table.sent:
            self._holders.clear()
            return
        keys = [self._keys.celery_unacked(), self._keys.celery_unacked_index()]
        live = await self._live_holders()
        stale = [
            _text(t) for t in await self._stale(keys=keys, args=[ORPHAN_AFTER, SCAN_LIMIT, WINDOW])
        ]
        sent = self._table.sent
        mine = [tag for tag in stale if tag in sent and tag not in live]
        if not mine or time.monotonic() - self._calm_since < ORPHAN_AFTER:
            return
        claimed = [_text(t) for t in await self._claim(keys=keys, args=[ORPHAN_AFTER, *mine])]
        for tag in claimed:
            message = sent.get(tag)
            if message is None:
                continue  # settled meanwhile (cancelled): nothing left to send
            self.claimed += 1
            holder = self._holders.get(tag, "(not seen in a heartbeat yet)")
            why = f"worker {holder} stopped heartbeating while holding it"
            self._recovery.bring_back(message, why=why, killed_by=holder)

    async def _live_holders(self) -> set[str]:
        """The tags live workers list as held; remembers who held what, to name the dead."""
        live = await held_by_live_workers(self._client, self._keys, self._holders)
        sent = self._table.sent
        for tag in [tag for tag in self._holders if tag not in sent]:
            del self._holders[tag]
        return live
