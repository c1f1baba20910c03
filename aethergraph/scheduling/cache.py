"""Caching across runs: ``@tool(cache=True)`` reuses an earlier outcome of the same call.

A node of a caching tool is looked up before it is dispatched, under a key made of the tool's
name, version and source digest (``ToolSpec.source_digest``: an edited tool misses) and the
content hash of its arguments — dependencies' values included, so a node downstream of a
changed value misses as well. Prefect's default cache policy (inputs + task source) is the model.

A hit settles the node at once with the stored outputs: no executor sees it, it shows as
``reused="cached"`` on the node, its ``done`` event and the graph picture. A miss is dispatched as
usual and its outputs are stored when it succeeds (failures are never cached), for
``cache_ttl`` seconds.

The store is the run's built-in key-value backend (``context.kv()``'s, under keys starting with
:data:`PREFIX`): Redis on the Celery executor, so every client of a deployment shares it; the
process's memory in-process, so a notebook re-running a graph reuses what it computed. Values
are stored as the codec's JSON, decoded with the tool's signature types on the way back.
A cache that cannot be read or written (Redis down, a value that is not JSON) is a miss, logged
with its traceback: caching never fails a run.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from aethergraph import codec
from aethergraph.accepted_types import signature_types
from aethergraph.execution.base import NodeJob
from aethergraph.services.builtins.kv import KVStore

log = logging.getLogger("aethergraph")

PREFIX = "aethergraph-cache:"


def cache_key(job: NodeJob) -> str | None:
    """The key of a node's call (None: its arguments cannot be encoded, so it is not cached)."""
    spec = job.tool
    try:
        args = codec.encode(job.args, where=f"node {job.node_id!r} argument")
        text = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
    except Exception:
        log.debug("node %s: arguments not encodable; not cached", job.node_id, exc_info=True)
        return None
    digest = hashlib.sha256(text).hexdigest()[:32]
    return f"{PREFIX}{spec.name}:{spec.version}:{spec.source_digest}:{digest}"


class NodeCache:
    """Reads and writes cached outcomes in a run's key-value backend."""

    def __init__(self, kv: KVStore) -> None:
        self._kv = kv

    async def lookup(self, key: str, job: NodeJob) -> dict[str, Any] | None:
        try:
            stored = await self._kv.get(key)
            if stored is None:
                return None
            outputs = codec.decode(stored, accepted=signature_types(job.tool.fn))
        except Exception:
            log.warning("cache lookup of node %s failed; running it", job.node_id, exc_info=True)
            return None
        return outputs if isinstance(outputs, dict) else None

    async def store(self, key: str, outputs: dict[str, Any], ttl: float | None) -> None:
        try:
            await self._kv.set(key, codec.encode(outputs, where="cached outputs"), ttl=ttl)
        except Exception:
            log.warning("could not cache outputs under %s", key, exc_info=True)
