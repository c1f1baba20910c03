"""Whether a message's client is still alive, as its lease says (``execution/celery/lease.py``).

A node runs only while its client's lease key exists: no live client, no run and no outcome
written anywhere (a forged message naming a made-up client writes nothing). One exception in
time: a Redis restart without persistence wipes every lease, and a client renews its lease
every :data:`~aethergraph.execution.celery.lease.RENEW_EVERY` seconds, so for a message younger
than its lease (``sent`` and ``lease`` in its metadata) a missing lease is waited for up to
:data:`WAIT_FOR_RENEWAL` seconds before the message is dropped. (The client's clock and the
worker's are compared: keep them within a few seconds, as NTP does.)

Checked before each node starts, with the answer kept for :data:`FRESH` seconds per client, so
a fan-out of thousands of nodes costs one ``EXISTS`` per client per second and process, not one
per node. When the broker cannot be asked, the client counts as alive: a broker blip must never
drop work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from aethergraph.keys import Keys

log = logging.getLogger("aethergraph.worker")

FRESH = 1.0  # seconds an answer is trusted
WAIT_FOR_RENEWAL = 3.0  # seconds a young message waits for a wiped lease to be renewed


class Leases:
    """Cached answers to "is this client alive?" for one worker process."""

    def __init__(self, keys: Keys, redis_client: Callable[[], redis.Redis]) -> None:
        self._keys = keys
        self._redis = redis_client
        self._known: dict[str, tuple[float, bool]] = {}  # client id -> (checked at, alive)
        self._gone: set[str] = set()  # clients whose lease was waited for in vain

    def wanted(self, meta: dict[str, Any]) -> bool:
        """Should this message's nodes still be started? (see the module docstring)"""
        client = str(meta["client"])
        if self.alive(client):
            return True
        try:
            young = time.time() - float(meta.get("sent", 0.0)) <= float(meta.get("lease", 0.0))
        except (TypeError, ValueError):
            young = False
        if not young or client in self._gone:
            return False
        deadline = time.monotonic() + WAIT_FOR_RENEWAL
        while time.monotonic() < deadline:
            time.sleep(0.25)
            self._known.pop(client, None)
            if self.alive(client):
                return True
        if len(self._gone) > 1000:
            self._gone.clear()
        self._gone.add(client)  # its other messages are dropped without waiting
        return False

    def alive(self, client: str) -> bool:
        now = time.monotonic()
        known = self._known.get(client)
        if known is not None and now - known[0] < FRESH:
            return known[1]
        try:
            alive = bool(self._redis().exists(self._keys.client_lease(client)))
        except redis.RedisError as exc:
            log.warning(
                "could not check the lease of client %s (%s): running its node", client, exc
            )
            return True
        if len(self._known) > 1000:
            self._known.clear()
        self._known[client] = (now, alive)
        return alive
