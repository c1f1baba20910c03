"""A run's durable record in Redis: what resuming, reattaching and ``aethergraph runs`` read.

Three keys per namespace (``keys.py``), each kept ``AETHERGRAPH_RUN_TTL`` seconds after its
last change:

* ``run:<id>:info`` — the run's graph, client, origin, state (running → done / failed /
  cancelled), start and end times, node counts, error, and its encoded result (outputs);
* ``run:<id>:nodes`` — one entry per node, its latest: ``sent`` (written by the client in the
  pipeline that publishes the node's message: its outcome id, Celery task id, queue, the
  client it answers to) until the worker that ran it overwrites it with the node's **outcome**
  (the same JSON it pushes to the client, in the same round trip). So the record of a node is
  complete even when its client died before the outcome arrived;
* ``runs:index`` — run ids by start time.

Every entry carries the node's **identity** (:func:`node_ident`): the tool's source digest, the
node id (tool name and call order) and a SHA-256 of its arguments as the codec encodes them. A
replayed body (``run(..., run_id=ID, resume=True)``) makes the same calls in the same order; a
node whose identity matches its entry reuses that entry (``resume.py``), any other runs.

Cost on the hot path: one hash of each node's encoded arguments on the client, one ``HSET`` per
message (all nodes of a pack in one) in the publish pipeline, one ``HSET`` per outcome in the
worker's push pipeline: no extra round trip anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from aethergraph.keys import Keys

INDEX_KEEP = 1000  # newest runs kept in the index (older ids are trimmed; their keys expire)


def node_ident(src: str, node_id: str, encoded_args: Any) -> str:
    """A node's identity: its tool's source digest, its id and its encoded arguments."""
    data = orjson.dumps(encoded_args, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{src}\0{node_id}\0".encode() + data).hexdigest()[:32]


def sent_common(*, task_id: str, queue: str, client: str, tool: str) -> bytes:
    """The part of a ``sent`` entry its message's nodes share (made once per message)."""
    return orjson.dumps({"task": task_id, "queue": queue, "client": client, "tool": tool})[1:]


def sent_entry(outcome_id: str, ident: str, attempt: int, common: bytes) -> bytes:
    """A node's entry while its message is out: where to find and adopt it (hot: once per
    node, so the message's shared part is spliced in, not serialized again)."""
    return b'{"sent":"%s","ident":"%s","attempt":%d,%s' % (
        outcome_id.encode(),
        ident.encode(),
        attempt,
        common,
    )


class RunRecords:
    """Writes a client's runs' headers and reads records back (the client's side)."""

    def __init__(self, keys: Keys, ttl: float) -> None:
        self.keys = keys
        self.ttl = max(1, int(ttl))

    def queue_sent(self, pipe: Any, run_id: str, entries: dict[str, bytes]) -> None:
        key = self.keys.run_nodes(run_id)
        pipe.hset(key, mapping=entries)
        pipe.expire(key, self.ttl)

    async def started(
        self, client: aioredis.Redis, run_id: str, graph: str, client_id: str, resumed: bool
    ) -> None:
        now = time.time()
        info = self.keys.run_info(run_id)
        fields: dict[Any, Any] = {
            "graph": graph,
            "client": client_id,
            "origin": f"{socket.gethostname()}:{os.getpid()}",
            "state": "running",
            "updated": repr(now),
        }
        pipe = client.pipeline(transaction=False)
        if resumed:
            pipe.hincrby(info, "resumes", 1)
        else:
            fields["started"] = repr(now)
        pipe.hset(info, mapping=fields)
        pipe.expire(info, self.ttl)
        pipe.zadd(self.keys.runs_index(), {run_id: now}, nx=True)
        pipe.zremrangebyrank(self.keys.runs_index(), 0, -INDEX_KEEP - 1)
        await pipe.execute()

    async def ended(self, client: aioredis.Redis, run_id: str, summary: dict[str, Any]) -> None:
        info = self.keys.run_info(run_id)
        fields: dict[Any, Any] = {
            "state": str(summary.get("status", "unknown")),
            "updated": repr(time.time()),
            "finished": repr(time.time()),
            "counts": json.dumps(summary.get("counts") or {}),
            "error": str(summary.get("error") or ""),
            "result": orjson.dumps(summary.get("result")).decode(),
        }
        pipe = client.pipeline(transaction=False)
        pipe.hset(info, mapping=fields)
        pipe.expire(info, self.ttl)
        pipe.expire(self.keys.run_nodes(run_id), self.ttl)
        await pipe.execute()

    async def cancelled(self, client: aioredis.Redis, run_id: str, node_id: str) -> None:
        """The client cancelled a sent node: a resumed run runs it again (not adopt it)."""
        await client.hset(self.keys.run_nodes(run_id), node_id, b'{"cancelled":true}')

    async def load_nodes(self, client: aioredis.Redis, run_id: str) -> dict[str, dict[str, Any]]:
        raw = await client.hgetall(self.keys.run_nodes(run_id))
        return _parse_nodes(raw)


def _parse_nodes(raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for field, value in raw.items():
        try:
            entry = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # not ours
        if isinstance(entry, dict):
            nodes[field.decode() if isinstance(field, bytes) else str(field)] = entry
    return nodes


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_state(entry: dict[str, Any]) -> str:
    """``sent`` (in flight), ``done``, ``failed`` or ``skipped`` (a worker dropped it, its
    client being gone, or the client cancelled it): a node entry's state."""
    if "sent" in entry:
        return "sent"
    if entry.get("skipped") or entry.get("cancelled"):
        return "skipped"
    return "done" if entry.get("ok") else "failed"


def read_run(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, Any] | None:
    """One run's record (header and nodes), read synchronously; None if there is none."""
    info = {_text(k): _text(v) for k, v in client.hgetall(keys.run_info(run_id)).items()}
    if not info:
        return None
    nodes = _parse_nodes(client.hgetall(keys.run_nodes(run_id)))
    return {"run_id": run_id, "info": info, "nodes": nodes}


def run_state(client: redis.Redis, keys: Keys, info: dict[str, str]) -> str:
    """The run's state; ``abandoned`` for a run still marked running whose client is gone
    (its lease expired: a killed kernel) — resume it to finish it."""
    state = info.get("state", "unknown")
    if state == "running" and not client.exists(keys.client_lease(info.get("client", ""))):
        return "abandoned"
    return state


def list_runs(client: redis.Redis, keys: Keys, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` runs: id, graph, state, times, node counts by state."""
    ids = [_text(r) for r in client.zrevrange(keys.runs_index(), 0, max(0, limit - 1))]
    pipe = client.pipeline(transaction=False)
    for run_id in ids:
        pipe.hgetall(keys.run_info(run_id))
        pipe.hvals(keys.run_nodes(run_id))
    replies = pipe.execute() if ids else []
    runs = []
    for index, run_id in enumerate(ids):
        info = {_text(k): _text(v) for k, v in replies[2 * index].items()}
        if not info:
            continue  # expired
        counts: dict[str, int] = {}
        for value in replies[2 * index + 1]:
            try:
                entry = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            state = entry_state(entry)
            counts[state] = counts.get(state, 0) + 1
        runs.append(
            {
                "run_id": run_id,
                "graph": info.get("graph", ""),
                "state": run_state(client, keys, info),
                "client": info.get("client", ""),
                "origin": info.get("origin", ""),
                "started": float(info.get("started") or 0) or None,
                "updated": float(info.get("updated") or 0) or None,
                "resumes": int(info.get("resumes") or 0),
                "nodes": counts,
                "error": info.get("error") or None,
            }
        )
    return runs
