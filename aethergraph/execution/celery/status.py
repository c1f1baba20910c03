"""A deployment's state now, from the broker alone: workers, queues and runs in flight.

What ``aethergraph status`` prints (and ``--json`` gives scripts), read in a few round trips:

* **workers** — the live heartbeats (``discovery.py``): id, host, pid, pool, concurrency,
  tools, queues, the messages each holds (reserved or running) and its last beat;
* **queues** — for every queue of the namespace, the messages waiting in it (``LLEN``) and how
  many live workers consume it. Queues are the namespace's Redis lists (``<ns>.<queue>``),
  found with a ``SCAN`` bounded to the namespace's prefix, so a queue *nobody* serves — the one
  an operator most needs to see — shows too;
* **runs** — the runs in flight, as their clients publish them (``live_runs.py``), with node
  counts by state; entries a dead client left behind are pruned here.

It reads and prunes, never writes anything else: running it against a production broker
changes nothing a worker or client relies on.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from aethergraph.execution.celery.discovery import read_workers_sync
from aethergraph.execution.celery.live_runs import STALE_AFTER
from aethergraph.keys import Keys
from aethergraph.redis_clients import sync_client
from aethergraph.settings import Settings

CONNECT_TIMEOUT = 5.0  # seconds
SCAN_COUNT = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _worker(info: dict[str, str]) -> dict[str, Any]:
    ts = info.get("ts")
    return {
        "id": info.get("id", "?"),
        "name": info.get("name", ""),
        "host": info.get("host", "?"),
        "pid": int(info.get("pid") or 0),
        "pool": info.get("pool", "?"),
        "concurrency": int(info.get("concurrency") or 0),
        "tools": _json_list(info.get("tools")),
        "queues": _json_list(info.get("queues")),
        "held": _json_list(info.get("held")),
        "busy": int(info["busy"]) if info.get("busy") else None,  # None: an older worker
        "last_heartbeat": float(ts) if ts else None,
    }


def queue_names(client: redis.Redis, keys: Keys) -> list[str]:
    """The namespace's Celery queues: its Redis lists named ``<ns>.<queue>``."""
    prefix = keys.queue_prefix()
    found = {
        _text(name) for name in client.scan_iter(match=f"{prefix}*", count=SCAN_COUNT, _type="list")
    }
    return sorted(found)


def read_workers(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """The live workers, their heartbeat fields parsed (``held`` and ``tools`` as lists)."""
    return sorted((_worker(w) for w in read_workers_sync(client, keys)), key=_by_host)


def read_queues(
    client: redis.Redis, keys: Keys, workers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each queue's waiting messages and the live workers consuming it."""
    names = set(queue_names(client, keys))
    consumers: dict[str, int] = {}
    for worker in workers:
        for queue in worker["queues"]:
            consumers[queue] = consumers.get(queue, 0) + 1
            names.add(queue)
    ordered = sorted(names)
    pipe = client.pipeline(transaction=False)
    for name in ordered:
        pipe.llen(name)
    lengths = pipe.execute() if ordered else []
    prefix = keys.queue_prefix()
    return [
        {
            "name": name.removeprefix(prefix),
            "key": name,
            "queued": int(length),
            "workers": consumers.get(name, 0),
        }
        for name, length in zip(ordered, lengths, strict=True)
    ]


def read_runs(client: redis.Redis, keys: Keys, now: float) -> list[dict[str, Any]]:
    """The runs in flight; entries no client updated for ``STALE_AFTER`` s are removed."""
    runs, stale = [], []
    for field, value in client.hgetall(keys.live_runs()).items():
        try:
            entry = json.loads(value)
        except ValueError:
            stale.append(field)
            continue
        if not isinstance(entry, dict) or now - float(entry.get("updated", 0)) > STALE_AFTER:
            stale.append(field)
            continue
        entry.setdefault("counts", {})
        runs.append(entry)
    if stale:
        client.hdel(keys.live_runs(), *stale)
    return sorted(runs, key=lambda r: float(r.get("started", 0)))


def read_status(settings: Settings) -> dict[str, Any]:
    """Workers, queues and runs of ``settings``' namespace on its broker, as one document."""
    keys = Keys(settings.namespace)
    client = sync_client(
        settings.broker_url or "",
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
    )
    try:
        now = time.time()
        workers = read_workers(client, keys)
        return {
            "namespace": settings.namespace,
            "time": now,
            "workers": workers,
            "queues": read_queues(client, keys, workers),
            "held": int(client.hlen(keys.celery_unacked())),
            "runs": read_runs(client, keys, now),
        }
    finally:
        client.close()


def _by_host(worker: dict[str, Any]) -> tuple[str, int]:
    return (str(worker["host"]), int(worker["pid"]))
