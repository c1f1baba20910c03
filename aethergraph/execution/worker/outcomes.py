"""Outcomes, worker side: a node's arguments in, its outcome out, pushed to the client.

Arguments arrive codec-encoded; large ones are materialized from the artifact store of the
worker's own built-ins. Outputs leave codec-encoded; large ones are offloaded to that store.
Each finished attempt becomes one outcome message (``wire.outcome_message``) carrying the
failure's full wire form and the worker's start/finish times, and a batch of them reaches the
client's result list in *one* pipelined round trip (a pack flushes many at once).

**At least once across a broker outage.** By the time a node's outcome is pushed its message
is acknowledged or about to be, so a push lost to a Redis restart would strand the node. The
pusher's client retries a failed push (redis-py's ``Retry``, exponential backoff capped at
:data:`BACKOFF_CAP` s) for about ``settings.broker_outage_timeout`` seconds before giving up —
then the task fails and the client's lost-message check sends the node again. A push retried
after a reply was lost may arrive twice; the client takes the first.

Which failures a retry cannot fix is decided here, where they happen: an argument this worker
cannot decode and outputs it cannot encode (:class:`~aethergraph.errors.CodecError`) are the
same on every attempt, so they are sent with ``retryable=False`` and the scheduler fails the node
at once instead of running the tool — and its side effects — again. Transient errors (the
artifact store or Redis unreachable) stay retryable.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from aethergraph import codec, offload, runtime_loop
from aethergraph.accepted_types import signature_types
from aethergraph.execution.base import NodeFailure, NodeOutcome, failure_from
from aethergraph.execution.wire import outcome_message
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.keys import Keys
from aethergraph.redis_clients import sync_client
from aethergraph.services.builtins.artifacts import ArtifactStore
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph.worker")

CONNECT_TIMEOUT = 2.0  # seconds
COMMAND_TIMEOUT = 10.0  # seconds a push may take (redis-py retries blips within it)
BACKOFF_CAP = 1.0  # seconds between two push attempts at most, while the broker is away


class Finished(NamedTuple):
    """One finished attempt: its Celery task id (or pack node id), its metadata, its outcome."""

    task_id: str
    meta: dict[str, Any]
    outcome: NodeOutcome


def failure_for(exc: BaseException) -> NodeFailure:
    """The failure for a payload error: deterministic codec errors are not retryable."""
    return failure_from(exc, retryable=not isinstance(exc, codec.CodecError))


def failed_now(failure: NodeFailure) -> NodeOutcome:
    """An outcome for an attempt that failed before (or instead of) running its tool."""
    now = time.time()
    return NodeOutcome(failure=failure, started_at=now, finished_at=now)


class OutcomePusher:
    """Decodes arguments, encodes outcomes and pushes them to the clients' result lists."""

    def __init__(
        self, settings: Settings, keys: Keys, artifacts: Callable[[], ArtifactStore]
    ) -> None:
        self.settings = settings
        self.keys = keys
        self._artifacts = artifacts  # the worker's own built-in store (built per process)
        self._redis: redis.Redis | None = None

    def redis(self) -> redis.Redis:
        if self._redis is None:  # redis-py pools reconnect after a fork by themselves
            # attempts over about the outage bound: capped pauses, plus the first fast ones
            attempts = int(self.settings.broker_outage_timeout / BACKOFF_CAP) + 5
            self._redis = sync_client(
                self.settings.broker_url or "",
                # a broker that stops answering is an error, never a slot blocked for good
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                # connection errors only: a broker that hangs already costs COMMAND_TIMEOUT
                retry=Retry(
                    ExponentialBackoff(cap=BACKOFF_CAP, base=0.05),
                    attempts,
                    supported_errors=(redis.ConnectionError,),
                ),
            )
        return self._redis

    # -- payload -----------------------------------------------------------------------
    def decode_args(self, kwargs: dict[str, Any], spec: ToolSpec) -> dict[str, Any]:
        """A node's arguments; they may name only the classes of the tool's signature."""
        args = codec.decode(kwargs, accepted=signature_types(spec.fn))
        if offload.contains_offloaded(args):
            args = runtime_loop.run_sync(offload.materialize(args, self._artifacts()))
        return dict(args)

    def _encode_outputs(self, node_id: Any, outputs: dict[str, Any]) -> dict[str, Any]:
        encoded: dict[str, Any] = codec.encode(outputs, where=f"outputs of node {node_id!r}")
        threshold = self.settings.offload_threshold
        if offload.needs_offload(encoded, threshold):
            store = self._artifacts()
            encoded = runtime_loop.run_sync(
                offload.offload_entries(encoded, store, threshold=threshold)
            )
        return encoded

    def message(self, finished: Finished) -> bytes:
        outcome = finished.outcome
        failure = outcome.failure.to_dict() if outcome.failure is not None else None
        outputs = None
        if outcome.outputs is not None:
            try:
                outputs = self._encode_outputs(finished.meta.get("node_id"), outcome.outputs)
            except Exception as exc:
                failure = failure_for(exc).to_dict()
        return outcome_message(
            task_id=finished.task_id,
            meta=finished.meta,
            outputs=outputs,
            failure=failure,
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
        )

    # -- pushing -----------------------------------------------------------------------
    def push(self, client: str, done: Sequence[Finished], record: int = 0) -> None:
        """Push finished attempts to the client's result list, in one round trip.

        ``record``: the run record's TTL when the client keeps one (its message's ``rec``):
        each outcome then also becomes its node's entry in the record, in the same round trip,
        so a run is complete in Redis even if its client died (``celery/run_record.py``)."""
        if not done:
            return
        messages = [self.message(finished) for finished in done]
        entries: dict[str, dict[str, bytes]] = {}
        if record:
            for finished, message in zip(done, messages, strict=True):
                meta = finished.meta
                if meta.get("run_id") and meta.get("node_id"):
                    run = entries.setdefault(str(meta["run_id"]), {})
                    run[str(meta["node_id"])] = message
        self._append(client, messages, records=(entries, record))

    def record_not_run(self, meta: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        """Mark nodes this worker dropped because their client is gone as not run in their
        run's record: a resumed run runs them (it would otherwise adopt them and wait)."""
        ttl = int(meta.get("rec") or 0)
        entries: dict[str, dict[Any, Any]] = {}
        for node in nodes:
            if ttl and node.get("run_id") and node.get("node_id"):
                entry = json.dumps({"skipped": True, "attempt": node.get("attempt") or 1})
                entries.setdefault(str(node["run_id"]), {})[str(node["node_id"])] = entry
        if not entries:
            return
        pipe = self.redis().pipeline(transaction=False)
        self._queue_records(pipe, entries, ttl)
        try:
            pipe.execute()
        except redis.RedisError:  # the record shows it sent: resuming adopts, then resends
            log.warning("could not mark skipped nodes in their run record", exc_info=True)

    def _append(
        self,
        client: str,
        messages: Sequence[str | bytes],
        release: str = "",
        records: tuple[dict[str, dict[str, bytes]], int] | None = None,
    ) -> None:
        """``messages`` onto the client's result list, its TTL refreshed, in one round trip;
        ``release``: also remove that delivery tag from kombu's unacked keys, atomically;
        ``records``: node entries to write into run records, and their TTL."""
        key = self.keys.client_results(client)
        pipe = self.redis().pipeline(transaction=bool(release))
        if release:
            pipe.zrem(self.keys.celery_unacked_index(), release)
            pipe.hdel(self.keys.celery_unacked(), release)
        if records is not None:
            self._queue_records(pipe, *records)
        pipe.rpush(key, *messages)
        pipe.expire(key, int(self.settings.result_ttl))
        pipe.execute()

    def _queue_records(self, pipe: Any, entries: dict[str, dict[Any, Any]], ttl: int) -> None:
        """Node entries into their runs' records (one ``HSET`` per run), TTLs refreshed."""
        for run_id, fields in entries.items():
            pipe.hset(self.keys.run_nodes(run_id), mapping=fields)
            pipe.expire(self.keys.run_nodes(run_id), ttl)

    def push_handback(
        self,
        client: str,
        outcome_ids: Sequence[str],
        *,
        worker: str,
        killed: bool,
        reason: str,
        release: str | None = None,
    ) -> None:
        """Give a message's nodes back to their client, which sends them again.

        ``killed``: the node running in it killed its pool process (counted as a death against
        that node); False when this worker is stopping and gave up on it. ``release``: the
        message's delivery tag, removed from kombu's unacked keys in the same round trip (so
        kombu's sweep never brings back what the client sends again).
        """
        back = {"worker": worker, "killed": killed, "reason": reason[:500]}
        messages = [json.dumps({"task_id": o, "handback": back}) for o in outcome_ids]
        if not messages:
            return
        self._append(client, messages, release or "")

    def push_started(self, client: str, task_id: str, at: float | None = None) -> None:
        """Tell the client a node's tool began at ``at`` (now by default): the node is running,
        and a tool with a timeout has its backstop clock start now (``started.py``)."""
        started = json.dumps({"task_id": task_id, "started": True, "at": at or time.time()})
        self._append(client, [started])  # with the list's TTL: never a list without one
