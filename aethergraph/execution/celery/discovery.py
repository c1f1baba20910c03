"""Which live workers serve which tools: read from the workers' index, never by ``SCAN``.

Workers heartbeat a hash per worker (``Keys.worker(id)``: tools, queues, concurrency, …, with a
short TTL) and a sorted set of worker ids scored by heartbeat time (``Keys.workers_index()``).
Discovery reads the set and then the hashes, two round trips whose cost grows with the number
of *workers* — not with every artifact, memory and kv key sharing the Redis, as ``SCAN MATCH``
over the keyspace did. A member whose hash expired is a dead worker and is ignored; members
scored more than :data:`PRUNE_AFTER` seconds ago are removed now and then, so the set stays small
even when workers die without cleaning up.

The dispatcher trusts a snapshot for :data:`REFRESH` seconds. ``LocalCluster.live_workers`` uses
the same reader (:func:`read_workers_sync`). A worker of a release that did not write the index
is not found: upgrade workers and clients together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis

from aethergraph.execution.base import NodeJob
from aethergraph.keys import Keys

REFRESH = 1.0  # seconds a snapshot of live workers is trusted
PRUNE_AFTER = 300.0  # index members without a heartbeat for this long are removed
PRUNE_EVERY = 60.0  # seconds between two prunes by one reader


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _workers(ids: Iterable[Any], hashes: Iterable[dict[Any, Any]]) -> list[dict[str, str]]:
    found = []
    for worker_id, fields in zip(ids, hashes, strict=True):
        if fields:  # an expired hash: the worker is gone
            info = {_text(k): _text(v) for k, v in fields.items()}
            info.setdefault("id", _text(worker_id))
            found.append(info)
    return found


async def read_workers(
    client: aioredis.Redis, keys: Keys, *, prune: bool = False
) -> list[dict[str, str]]:
    """The live workers' heartbeat hashes (async)."""
    index = keys.workers_index()
    ids = list(await client.zrange(index, 0, -1))
    names = [keys.worker(_text(i)) for i in ids]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    if prune:
        pipe.zremrangebyscore(index, "-inf", time.time() - PRUNE_AFTER)
    results = await pipe.execute() if names or prune else []
    return _workers(ids, results[: len(names)])


async def held_by_live_workers(
    client: aioredis.Redis, keys: Keys, holders: dict[str, str] | None = None
) -> set[str]:
    """The delivery tags live workers list as held (their heartbeats' ``held``).

    ``holders``, if given, is updated with tag -> worker id (to name a worker once it is dead).
    """
    live: set[str] = set()
    for info in await read_workers(client, keys):
        try:
            held = json.loads(info.get("held") or "[]")
        except ValueError:
            continue  # a half-written or foreign hash
        worker = info.get("id", "?")
        for tag in held:
            live.add(str(tag))
            if holders is not None:
                holders[str(tag)] = worker
    return live


def read_workers_sync(client: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    """The live workers' heartbeat hashes (blocking; ``LocalCluster.live_workers``)."""
    ids = list(client.zrange(keys.workers_index(), 0, -1))
    names = [keys.worker(_text(i)) for i in ids]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return _workers(ids, pipe.execute() if names else [])


class LiveWorkers:
    """A snapshot of the tools each queue's live workers serve and their pool slots."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self.served: dict[str, set[str]] = {}  # Celery queue -> tool names
        self.slots: dict[str, int] = {}  # Celery queue -> live worker processes
        self._fetched_at = float("-inf")
        self._pruned_at = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self._fetched_at > REFRESH

    def serves(self, job: NodeJob, task: str | None = None) -> bool:
        """Does a live worker on the job's queue serve its tool (or ``task``, the Celery task
        that carries it, when that is not the tool's own: shipped notebook tools)?"""
        queue = self._keys.tool_queue(job.tool.policy.queue)
        return (task or job.tool.name) in self.served.get(queue, ())

    async def refresh(self, client: aioredis.Redis) -> None:
        now = time.monotonic()
        prune = now - self._pruned_at > PRUNE_EVERY
        workers = await read_workers(client, self._keys, prune=prune)
        if prune:
            self._pruned_at = now
        served: dict[str, set[str]] = {}
        slots: dict[str, int] = {}
        for info in workers:
            try:
                tools = set(json.loads(info["tools"]))
                queues = json.loads(info["queues"])
                concurrency = int(info.get("concurrency") or 1)
            except (KeyError, ValueError, TypeError):
                continue  # a half-written or foreign hash
            for queue in queues:
                served.setdefault(queue, set()).update(tools)
                slots[queue] = slots.get(queue, 0) + concurrency
        self.served = served
        self.slots = slots
        self._fetched_at = time.monotonic()
