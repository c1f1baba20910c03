"""The client's lease: workers start this client's nodes only while it is alive.

A client that dies (SIGKILL, a closed laptop, a crashed kernel) leaves its queued messages
behind; without a lease its workers would go on running them for a result nobody reads. While
an executor is started it keeps one key, ``Keys.client_lease(client id)``, alive with a TTL of
``settings.client_lease`` seconds, renewed every :data:`RENEW_EVERY` seconds at most (so that
a lease wiped by a Redis restart without persistence is back within that); a clean ``close()``
deletes it at once. A worker checks the key before it starts a node
(``execution/worker/leases.py``) and skips the nodes of a client whose lease is gone. Nodes
already running finish; their outcomes go to a result list that expires by itself.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from aethergraph.execution.celery.broker import BROKER_ERRORS
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph")

RENEW_EVERY = 2.0  # seconds between renewals at most (a third of the lease if that is shorter)


class Lease:
    """Keeps this client's lease key alive while the executor is started."""

    def __init__(self, client: aioredis.Redis, keys: Keys, client_id: str, ttl: float) -> None:
        self._client = client
        self._key = keys.client_lease(client_id)
        self.ttl = ttl
        self._adopted: list[str] = []  # leases of dead clients whose nodes this one adopted

    def adopt(self, lease_key: str) -> None:
        """Keep a dead client's lease alive too: workers go on running its queued messages,
        whose nodes this client adopted (``resume.py``)."""
        if lease_key not in self._adopted:
            self._adopted.append(lease_key)

    async def renew(self) -> None:
        px = max(1, int(self.ttl * 1000))
        if not self._adopted:
            await self._client.set(self._key, "1", px=px)
            return
        pipe = self._client.pipeline(transaction=False)
        for key in (self._key, *self._adopted):
            pipe.set(key, "1", px=px)
        await pipe.execute()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(self.ttl / 3, RENEW_EVERY))
            try:
                await self.renew()
            except BROKER_ERRORS as exc:  # the listener and dispatcher handle outages
                log.debug("lease renewal skipped: %s", exc)

    async def release(self) -> None:
        """A clean close: the workers skip whatever of ours is still queued."""
        try:
            await self._client.delete(self._key, *self._adopted)
        except BROKER_ERRORS as exc:  # it expires by itself
            log.info(
                "could not release the client lease %s (it expires by itself): %s", self._key, exc
            )
