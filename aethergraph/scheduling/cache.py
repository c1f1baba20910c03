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

import asyncio
import hashlib
import logging
import time
import weakref
from typing import Any, Protocol

import orjson

from aethergraph import codec
from aethergraph.accepted_types import signature_types
from aethergraph.execution.base import DoneCallback, NodeJob, NodeOutcome
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


class _Run(Protocol):
    """The scheduler, as :class:`CachedCalls` uses it (on the runtime loop)."""

    @property
    def _report(self) -> DoneCallback: ...  # the executors' callback (any thread)

    def node(self, node_id: str) -> Any: ...
    def _on_outcome(self, job: NodeJob, outcome: NodeOutcome) -> None: ...
    def _submit(self, jobs: list[NodeJob], on_done: DoneCallback | None = None) -> None: ...
    def _break(self, exc: BaseException) -> None: ...


class CachedCalls:
    """A run's caching nodes: each is looked up, settled at once on a hit, else dispatched
    with its outputs stored when it succeeds. Runs on the runtime loop, for the scheduler it
    holds weakly (a strong reference back would make every caching run a reference cycle)."""

    def __init__(self, cache: NodeCache, loop: asyncio.AbstractEventLoop, run: _Run) -> None:
        self._cache = cache
        self._loop = loop
        self._run = weakref.ref(run)
        self._keys: dict[str, str] = {}  # job key -> cache key, for the misses in flight

    def take(self, jobs: list[NodeJob]) -> None:
        self._loop.create_task(self._route(jobs))

    async def _route(self, jobs: list[NodeJob]) -> None:
        misses: list[NodeJob] = []
        for job in jobs:
            key = cache_key(job)
            outputs = await self._cache.lookup(key, job) if key is not None else None
            run = self._run()
            if run is None:
                return  # the run is gone
            state = run.node(job.node_id)
            if state.job is not job:
                continue  # cancelled meanwhile
            if outputs is not None:
                now = time.time()
                hit = NodeOutcome(outputs, started_at=now, finished_at=now, reused="cached")
                try:
                    run._on_outcome(job, hit)
                except Exception as exc:  # the scheduler's own guard, as for any outcome
                    run._break(exc)
                continue
            if key is not None:
                self._keys[job.key] = key
            misses.append(job)
        run = self._run()
        if misses and run is not None:
            run._submit(misses, self._store_then_report)

    def _store_then_report(self, job: NodeJob, outcome: NodeOutcome) -> None:
        """The misses' ``on_done`` (any thread): report at once, store on the runtime loop."""
        key = self._keys.pop(job.key, None)
        outputs = outcome.outputs
        if key is not None and outcome.failure is None and outputs is not None:
            ttl = job.tool.policy.cache_ttl
            self._loop.call_soon_threadsafe(self._store, key, outputs, ttl)
        run = self._run()
        if run is not None:
            run._report(job, outcome)

    def _store(self, key: str, outputs: dict[str, Any], ttl: float | None) -> None:
        self._loop.create_task(self._cache.store(key, outputs, ttl))
