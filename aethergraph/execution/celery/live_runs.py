"""Runs in flight, as monitoring sees them: each client publishes its own.

The client is the source of truth of a run's graph (workers only see single nodes), so a
monitor learns which runs are in flight, and how far each has come, only if clients say so.
While a run is open on a Celery executor, the executor writes a summary of it every
:data:`PUBLISH_EVERY` seconds into one hash per namespace, ``Keys.live_runs()`` — field = run
id, value = JSON: graph, client, origin (``pid@host``), started and updated times, and node
counts by state — and deletes the field when the run ends. ``aethergraph status``
(``status.py``) reads it.

A client killed mid-run cannot delete its fields: readers ignore (and prune) entries whose
``updated`` is older than :data:`STALE_AFTER` seconds, and the hash itself expires when no
client has written it for that long. One pipelined write per period for all of a client's
runs: the cost does not grow with the nodes, only with the runs open at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from aethergraph import jsontext
from aethergraph.execution.celery.broker import BROKER_ERRORS
from aethergraph.execution.wire import origin
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph")

PUBLISH_EVERY = 2.0  # seconds between two summaries of a client's runs
STALE_AFTER = 10.0  # seconds after which an entry nobody updated is a dead client's

#: a run's live summary: ``{"graph": ..., "counts": {state: n}}``
Describe = Callable[[], dict[str, Any]]


class LiveRuns:
    """The runs this client has open, published for monitors."""

    def __init__(self, keys: Keys, client_id: str) -> None:
        self._key = keys.live_runs()
        self._client_id = client_id
        self._lock = threading.Lock()  # runs start and end on their bodies' threads
        self._runs: dict[str, tuple[Describe, float]] = {}
        self._ended: set[str] = set()

    def started(self, run_id: str, describe: Describe) -> None:
        with self._lock:
            self._runs[run_id] = (describe, time.time())
            self._ended.discard(run_id)

    def ended(self, run_id: str) -> None:
        with self._lock:
            if self._runs.pop(run_id, None) is not None:
                self._ended.add(run_id)

    def _entries(self, now: float) -> dict[str, bytes]:
        with self._lock:
            runs = list(self._runs.items())
        entries = {}
        for run_id, (describe, started) in runs:
            try:
                summary = describe()
            except Exception:  # a monitor's view must never break a run
                log.warning("could not summarize run %s for monitoring", run_id, exc_info=True)
                continue
            entries[run_id] = jsontext.dumps(
                {
                    **summary,
                    "run_id": run_id,
                    "client": self._client_id,
                    "origin": origin(),
                    "started": started,
                    "updated": now,
                }
            )
        return entries

    async def publish(self, client: aioredis.Redis) -> None:
        """Write the open runs' summaries and delete the ended ones' (one round trip)."""
        now = time.time()
        entries = self._entries(now)
        with self._lock:
            ended, self._ended = self._ended, set()
        if not entries and not ended:
            return
        pipe = client.pipeline(transaction=False)
        if ended:
            pipe.hdel(self._key, *ended)
        if entries:
            pipe.hset(self._key, mapping=entries)  # type: ignore[arg-type]
            pipe.expire(self._key, int(STALE_AFTER * 6))
        try:
            await pipe.execute()
        except BROKER_ERRORS as exc:
            with self._lock:  # delete them next time
                self._ended |= ended - set(self._runs)
            log.debug("live runs not published: %s", exc)

    async def close(self, client: aioredis.Redis) -> None:
        """The executor closes: none of its runs is in flight any more."""
        with self._lock:
            self._ended |= set(self._runs)
            self._runs.clear()
        await self.publish(client)

    async def run(self, client: aioredis.Redis) -> None:
        """Publish every :data:`PUBLISH_EVERY` seconds while the executor is started."""
        while True:
            await self.publish(client)
            await asyncio.sleep(PUBLISH_EVERY)
