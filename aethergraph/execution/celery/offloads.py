"""Offloaded arguments live as long as their run needs them, not the artifact store's week.

A node argument bigger than ``offload_threshold`` travels by reference: the client saves it in
the Redis artifact store and the message carries its URI. Those blobs are the client's, made
only for its messages, so:

* they are saved with a short TTL, ``settings.offload_ttl`` (a backstop for a client that dies);
* they are **released** — deleted — once their run has no node in flight or waiting to be sent
  (after :data:`RELEASE_DELAY` seconds, so a retry about to be sent is not caught in between; a
  retry saves its argument again anyway). A blob another run of this client still uses is kept.

Values a *worker* offloaded (large outputs passed from tool to tool) are results, not
arguments: they keep the artifact store's own lifetime. Only the Redis store is released; a
filesystem store is the operator's to clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from aethergraph import offload
from aethergraph.codec import is_ref
from aethergraph.execution.base import NodeJob
from aethergraph.execution.celery.broker import BROKER_ERRORS
from aethergraph.keys import Keys
from aethergraph.services.builtins.artifacts import ArtifactStore, parse_uri

log = logging.getLogger("aethergraph")

RELEASE_DELAY = 5.0  # seconds a settled run's blobs wait before they are deleted


class RunOffloads:
    """Offloads nodes' large arguments, remembers them per run, and releases them.

    ``release``: delete a settled run's blobs (True for the executor's own Redis store).
    """

    def __init__(
        self,
        store: ArtifactStore,
        keys: Keys,
        *,
        release: bool,
        busy: Callable[[str], bool],
        spawn: Callable[..., object],
    ) -> None:
        self.store = store
        self._release = release
        self._keys = keys
        self._busy = busy  # does the run still have nodes in flight or unsent?
        self._spawn = spawn  # Background.spawn
        self.redis: aioredis.Redis | None = None  # set by the executor's start()
        self._by_run: dict[str, set[str]] = {}  # run id -> digests
        #: blobs deleted so far (tests and diagnostics)
        self.released = 0

    async def offload(self, job: NodeJob, kwargs: dict[str, Any], threshold: int) -> dict[str, Any]:
        """``kwargs`` with its big entries in the store, as references (noted for the run)."""
        out = await offload.offload_entries(kwargs, self.store, threshold=threshold)
        if self._release:
            digests = {
                parse_uri(v["uri"]) for k, v in out.items() if is_ref(v) and not is_ref(kwargs[k])
            }
            if digests:
                self._by_run.setdefault(job.run_id, set()).update(digests)
        return out

    def settled(self, run_id: str) -> None:
        """The run has nothing in flight any more: release its blobs soon, if it stays so."""
        if run_id in self._by_run:
            asyncio.get_running_loop().call_later(RELEASE_DELAY, self._maybe_release, run_id)

    def _maybe_release(self, run_id: str) -> None:
        if self._busy(run_id) or run_id not in self._by_run:
            return
        digests = self._by_run.pop(run_id)
        for other in self._by_run.values():
            digests -= other
        if digests and self.redis is not None:
            self._spawn(self._delete(sorted(digests)), "offload release")

    async def _delete(self, digests: list[str]) -> None:
        assert self.redis is not None
        try:
            self.released += await self.redis.delete(*(self._keys.artifact(d) for d in digests))
        except BROKER_ERRORS as exc:  # the short TTL removes them anyway
            log.info("could not release %d offloaded argument(s): %s", len(digests), exc)
