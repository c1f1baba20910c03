"""A run's durable record in Redis: what resuming, reattaching and ``aethergraph runs`` read.

Three keys per namespace (``keys.py``), each kept ``AETHERGRAPH_RUN_TTL`` seconds after its
last change:

* ``run:<id>:info`` — the run's graph, client, origin, state (running → done / failed /
  cancelled), start and end times, node counts, error, and its encoded result (outputs);
* ``run:<id>:nodes`` — per **message**, a ``m:<task id>`` field written by the client in the
  pipeline that publishes it: its queue, the client it answers to, and each of its nodes (node
  id, outcome id, identity, attempt) — one field per message, not per node, so a pack of 64
  costs one field; per **node**, a field named by its node id with its **outcome**, written by
  the worker that ran it (the same JSON it pushes to the client, in the same round trip), or
  ``skipped`` / ``cancelled``. A node's state is its latest attempt's: the node field when it
  has one for that attempt, else the message that carries it (``sent``). So the record of a
  node is complete even when its client died before the outcome arrived;
* ``runs:index`` — run ids by start time.

A message's field carries each node's **identity** (:func:`node_ident`): the tool's source
digest, the node id (tool name and call order) and a SHA-256 of its arguments as the codec
encodes them; a node's outcome has the identity of the message (attempt) it answers. A
replayed body (``run(..., run_id=ID, resume=True)``) makes the same calls in the same order; a
node whose identity matches its entry reuses that entry (``resume.py``), any other runs.

Cost on the hot path: one hash of each node's encoded arguments on the client, one ``HSET`` field
per message in the publish pipeline, one ``HSET`` per outcome in the worker's push pipeline: no
extra round trip anywhere.
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
    """A node's identity: its tool's source digest, its id and its encoded arguments (their
    order is the call's, the same in a replay of the same code)."""
    data = orjson.dumps(encoded_args)
    return hashlib.sha256(f"{src}\0{node_id}\0".encode() + data).hexdigest()[:24]


MESSAGE = "m:"  # the prefix of a message's field (node ids never hold a colon)


def message_entry(
    *, task_id: str, queue: str, client: str, tool: str, nodes: list[tuple[str, str, str, int]]
) -> tuple[str, bytes]:
    """A message's field: ``(node id, outcome id, identity, attempt)`` of each node it carries,
    and where it is (its task id, queue, the client it answers to)."""
    entry = {"task": task_id, "queue": queue, "client": client, "tool": tool, "nodes": nodes}
    return MESSAGE + task_id, orjson.dumps(entry)


class RunRecords:
    """Writes a client's runs' headers and reads records back (the client's side)."""

    def __init__(self, keys: Keys, ttl: float) -> None:
        self.keys = keys
        self.ttl = max(1, int(ttl))

    def queue_sent(self, pipe: Any, run_id: str, entries: dict[Any, Any]) -> None:
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

    async def cancelled(
        self, client: aioredis.Redis, run_id: str, node_id: str, attempt: int
    ) -> None:
        """The client cancelled a sent node: a resumed run runs it again (not adopt it)."""
        entry = orjson.dumps({"cancelled": True, "attempt": attempt})
        await client.hset(self.keys.run_nodes(run_id), node_id, entry)

    async def load_nodes(self, client: aioredis.Redis, run_id: str) -> dict[str, dict[str, Any]]:
        raw = await client.hgetall(self.keys.run_nodes(run_id))
        return node_entries(raw)


def node_entries(raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """Each node's latest entry: its own field for that attempt (an outcome, skipped or
    cancelled), else the message that carries it (``sent``)."""
    nodes: dict[str, dict[str, Any]] = {}
    messages: list[dict[str, Any]] = []
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        try:
            entry = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # not ours
        if not isinstance(entry, dict):
            continue
        if name.startswith(MESSAGE):
            messages.append(entry)
        else:
            nodes[name] = entry
    sent: dict[str, dict[str, Any]] = {}
    idents: dict[tuple[str, int], str] = {}
    for message in messages:
        shared = {k: message.get(k) for k in ("task", "queue", "client", "tool")}
        for node_id, outcome_id, ident, attempt in message.get("nodes") or ():
            idents[node_id, attempt] = ident
            known = sent.get(node_id)
            if known is None or known["attempt"] < attempt:
                sent[node_id] = {"sent": outcome_id, "ident": ident, "attempt": attempt, **shared}
    for node_id, entry in nodes.items():  # an outcome's identity is its message's, that attempt
        entry["ident"] = idents.get((node_id, int(entry.get("attempt") or 0)))
    for node_id, entry in sent.items():
        own = nodes.get(node_id)
        if own is None or int(own.get("attempt") or 0) < entry["attempt"]:
            nodes[node_id] = entry
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
    nodes = node_entries(client.hgetall(keys.run_nodes(run_id)))
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
        pipe.hgetall(keys.run_nodes(run_id))
    replies = pipe.execute() if ids else []
    runs = []
    for index, run_id in enumerate(ids):
        info = {_text(k): _text(v) for k, v in replies[2 * index].items()}
        if not info:
            continue  # expired
        counts: dict[str, int] = {}
        for entry in node_entries(replies[2 * index + 1]).values():
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
