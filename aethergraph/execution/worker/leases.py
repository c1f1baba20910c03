"""Whether a message's client is still alive, as its lease says (``execution/celery/lease.py``).

A message is dropped when its client's lease key is gone *and* the message is older than the
lease (``sent`` and ``lease`` in its metadata): a Redis restart without persistence wipes every
lease, and a client renews its lease only every third of it, so a message sent just before
such a restart must not be taken for a dead client's. (Its clock and the worker's are compared:
keep them within a few seconds, as NTP does.)

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


class Leases:
    """Cached answers to "is this client alive?" for one worker process."""

    def __init__(self, keys: Keys, redis_client: Callable[[], redis.Redis]) -> None:
        self._keys = keys
        self._redis = redis_client
        self._known: dict[str, tuple[float, bool]] = {}  # client id -> (checked at, alive)

    def wanted(self, meta: dict[str, Any]) -> bool:
        """Should this message's nodes still be started? (see the module docstring)"""
        try:
            age = time.time() - float(meta.get("sent", 0.0))
            lease = float(meta.get("lease", 0.0))
        except (TypeError, ValueError):
            return True  # no usable stamp: run it
        return age <= lease or self.alive(str(meta["client"]))

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
