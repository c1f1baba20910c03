"""Dispatch: from ready nodes to Celery messages in the broker, in one round trip per batch.

**Outbox.** ``submit`` only appends to the outbox; one dispatcher task drains it. Each pass takes
every ready node submitted so far, holds back nodes whose tool no live worker serves (they wait
up to ``AETHERGRAPH_WORKER_WAIT`` seconds for one, then fail with a message saying which worker
to start — never a silent hang), encodes the others' arguments (a value that cannot be encoded
fails its node at once, naming the argument; large values go to the executor's artifact store
and travel by reference) and publishes the batch.

**The publisher is hand-written on purpose**: Celery protocol-2 messages in kombu's Redis
envelope (``wire.task_envelope``), ``LPUSH``-ed for a whole batch in one pipelined round trip.
``apply_async`` costs one round trip and far more CPU per message; this is the hot path (a
fan-out publishes thousands of nodes per second), so no per-node Redis round trip is added here.

**Packs.** Many ready nodes of one tool (a fan-out) are *packed*: up to ``max_pack`` of them
travel in one Celery message, so Celery's fixed per-message cost (broker round trips, acks,
events, pool hand-off) is paid once per pack. A pack is a unit of *delivery*, not of
parallelism: the worker runs a pack's nodes within the one slot that took the message, never
more of them at once than that slot may run (the worker side enforces its slot limit), so
packing never multiplies a worker's ``-c``. Packs are made only when there are at least four per
live worker slot, so every slot still gets work and a small batch is sent node by node; nodes
with a timeout are never packed (a timeout is a per-message limit).

**Cancellation while publishing.** A node is *unsent* from ``submit`` until its message is in
the pipeline. Cancelling an unsent node just forgets it; the publisher checks again after every
``await`` (argument offload, Pub/Sub subscription), so a node cancelled meanwhile is not sent,
and it leaves nothing behind in any table.

**Broker errors.** A ``RedisError`` anywhere in a pass (worker discovery, offload, the publish
itself) puts the batch back in the outbox, and the pass is tried again after a backoff; once the
broker has been unreachable beyond ``broker_outage_timeout`` every unsent node fails with
``BrokerUnavailableError`` (see ``broker``). A failed publish also releases the runs it followed.
A publish that failed midway may have delivered some of its messages; they are sent again under
new ids, so such a node may run twice (execution is at-least-once; the outcome of the copy that
was given up on is ignored).
Any other exception is a bug: it is logged with its traceback and fails the batch's nodes, and
the dispatcher carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from aethergraph import codec, offload
from aethergraph.errors import InternalError, WorkerUnavailableError
from aethergraph.execution.base import DoneCallback, NodeJob, NodeOutcome, failure_from
from aethergraph.execution.celery.background import Background
from aethergraph.execution.celery.broker import BROKER_ERRORS, Outage
from aethergraph.execution.celery.discovery import LiveWorkers
from aethergraph.execution.celery.follow import Follower
from aethergraph.execution.celery.inflight import InFlight, Sent
from aethergraph.execution.celery.offloads import RunOffloads
from aethergraph.execution.celery.run_record import RunRecords, node_ident, sent_entry
from aethergraph.execution.shipping import SHIPPED_TASK, CodeShipper, is_notebook_tool
from aethergraph.execution.wire import META, node_kwargs_repr, pack_kwargs_repr, task_envelope
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.services.builtins.redis_backends import closed_transport_is_a_connection_error
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph")

TIMEOUT_GRACE = 5.0  # Celery's hard limit (and the client's backstop) this long after a timeout
WAIT_POLL = 0.2  # seconds between looks for a worker while nodes wait for one
PACKS_PER_SLOT = 4

_Entry = tuple[NodeJob, DoneCallback]
_Encoded = tuple[NodeJob, DoneCallback, dict[str, Any], str]  # ..., wire kwargs, identity


def message_meta(client_id: str, lease: float) -> dict[str, Any]:
    """Who sent a message, when, and how long the sender's lease lasts: a worker skips a
    message whose client's lease is gone (``execution/worker/leases.py``)."""
    return {"client": client_id, "sent": time.time(), "lease": lease}


def node_meta(job: NodeJob) -> dict[str, Any]:
    return {
        "run_id": job.run_id,
        "graph_id": job.graph_id,
        "node_id": job.node_id,
        "attempt": job.attempt,
        # the client retries a failure while attempt <= retries: the worker tells Celery (and
        # so Flower and the metrics) a retry from a final failure with the client's own policy
        "retries": job.tool.policy.retries,
        "timeout": job.timeout,
    }


def no_worker_error(job: NodeJob, waited: float, shipping: bool) -> WorkerUnavailableError:
    queue = job.tool.policy.queue or DEFAULT_QUEUE
    if is_notebook_tool(job.tool):
        where = (
            f"no live worker on queue {queue!r} accepts code shipped from the notebook (start "
            f"one with: aethergraph worker --accept-code -Q {queue})"
            if shipping
            else f"no live worker serves it on queue {queue!r}, and this client does not ship "
            "code (workers cannot import a notebook)"
        )
        return WorkerUnavailableError(
            f"tool {job.tool.name!r} is defined in the notebook (__main__), and {where}; waited "
            f"{waited:g}s. A LocalCluster ships notebook tools to its workers; for other workers "
            "move the tool to a module and start them with --tools <module>, or see "
            "docs/notebooks.md for AETHERGRAPH_SHIP_CODE on a shared broker"
        )
    return WorkerUnavailableError(
        f"no live worker serves tool {job.tool.name!r} on queue {queue!r} (waited "
        f"{waited:g}s); start one with: aethergraph worker --tools "
        f"<module defining {job.tool.name}> -Q {queue}"
    )


def take_marks(front: set[str], jobs: Sequence[NodeJob]) -> bool:
    """Does a message of ``jobs`` go to the front of its queue? (forgets their marks)"""
    if not front:
        return False
    marked = [job.key for job in jobs if job.key in front]
    front.difference_update(marked)
    return bool(marked)


class Dispatcher:
    """The outbox and the publisher of one ``CeleryExecutor``."""

    def __init__(
        self,
        *,
        settings: Settings,
        keys: Keys,
        client_id: str,
        table: InFlight,
        workers: LiveWorkers,
        follower: Follower,
        offloads: RunOffloads,
        background: Background,
        stats: dict[str, int],
        shipper: CodeShipper | None = None,
        records: RunRecords | None = None,
    ) -> None:
        self._settings = settings
        #: ships notebook tools' code (None: this client does not, AETHERGRAPH_SHIP_CODE off)
        self.shipper = shipper
        #: writes each node's "sent" entry into its run's durable record (None: no records)
        self.records = records
        self._keys = keys
        self._client_id = client_id
        self._table = table
        self._workers = workers
        self._follower = follower
        self._offloads = offloads
        self._background = background
        self._stats = stats
        self._outage = Outage(settings.broker_url or "", settings.broker_outage_timeout)
        self._lease = settings.client_lease
        self.redis: aioredis.Redis | None = None  # set by the executor's start()
        self._outbox: deque[_Entry] = deque()
        self._waiting: list[tuple[NodeJob, DoneCallback, float]] = []
        self._unsent: set[str] = set()  # keys of submitted nodes not published yet
        self._front: set[str] = set()  # keys of nodes sent again: they jump the queue
        self._task: asyncio.Task[None] | None = None

    @property
    def unsent(self) -> int:
        return len(self._unsent)

    def submit(
        self, jobs: Sequence[NodeJob], on_done: DoneCallback, *, front: bool = False
    ) -> None:
        """Queue nodes for publishing. ``front``: nodes sent again after their worker died or
        stopped, published to the *front* of their queue (``RPUSH``: workers pop from the right)
        so that recovery does not wait behind everything queued since."""
        for job in jobs:
            self._outbox.append((job, on_done))
            self._unsent.add(job.key)
            if front:
                self._front.add(job.key)
        if self._task is None or self._task.done():
            self._task = self._background.spawn(self._run(), "dispatcher")

    def is_unsent(self, job_key: str) -> bool:
        return job_key in self._unsent

    def has_unsent(self, run_id: str) -> bool:
        prefix = f"{run_id}:"  # NodeJob.key is run:node:attempt
        return any(key.startswith(prefix) for key in self._unsent)

    def cancel(self, job_key: str) -> bool:
        """Forget an unsent node (True), or say it was published already (False)."""
        if job_key in self._unsent:
            self._unsent.discard(job_key)
            return True
        return False

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    # -- the loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        while self._outbox or self._waiting:
            batch: list[_Entry] = []
            try:
                if self._workers.stale:
                    assert self.redis is not None
                    await self._workers.refresh(self.redis)
                batch = self._take_ready()
                if batch:
                    await self._publish(batch)
                elif self._waiting and not self._outbox:
                    await asyncio.sleep(WAIT_POLL)  # wait for a worker to come up (heartbeats)
                self._outage.clear()
            except BROKER_ERRORS as exc:
                self._put_back(batch)
                if self._outage.failed():
                    self._fail_unsent(self._outage.error(exc, "dispatching nodes"))
                    self._outage.clear()
                else:
                    log.warning("dispatch: broker %s: %s; retrying", self._outage.broker, exc)
                    await asyncio.sleep(self._outage.pause())
            except Exception as exc:
                log.exception("dispatch: internal error; failing %d node(s)", len(batch))
                internal = InternalError(f"the Celery dispatcher failed: {exc!r}")
                internal.__cause__ = exc
                self._fail(batch, internal, retryable=False)
        self._front.intersection_update(self._unsent)  # marks of nodes cancelled or failed

    def _take_ready(self) -> list[_Entry]:
        """The nodes to publish now: waiting ones a worker serves by now, then the outbox."""
        unsent, workers = self._unsent, self._workers
        batch: list[_Entry] = []
        now = asyncio.get_running_loop().time()
        still_waiting = []
        for job, on_done, deadline in self._waiting:
            if job.key not in unsent:
                continue  # cancelled while waiting
            if workers.serves(job, self._task_name(job.tool)):
                batch.append((job, on_done))
            elif now >= deadline:
                unsent.discard(job.key)
                exc = no_worker_error(job, self._settings.worker_wait, self.shipper is not None)
                on_done(job, NodeOutcome(failure=failure_from(exc)))
            else:
                still_waiting.append((job, on_done, deadline))
        self._waiting = still_waiting
        wait = self._settings.worker_wait
        outbox = self._outbox
        while outbox:
            job, on_done = outbox.popleft()
            if job.key not in unsent:
                continue  # cancelled before its turn
            if workers.serves(job, self._task_name(job.tool)):
                batch.append((job, on_done))
            else:
                self._waiting.append((job, on_done, now + wait))
        return batch

    def _task_name(self, tool: ToolSpec) -> str:
        """The Celery task of a tool's messages: its own, or the shipped-code task for a
        notebook tool when this client ships code (``shipping.py``)."""
        if self.shipper is not None and is_notebook_tool(tool):
            return SHIPPED_TASK
        return tool.name

    def _code_meta(self, tool: ToolSpec, task_name: str) -> dict[str, Any]:
        """What a message says about its tool's code: the shipped code's digest, or the
        source digest a worker compares with its own (a stale worker: ``ToolCodeError``)."""
        if task_name == SHIPPED_TASK:
            assert self.shipper is not None
            return {"code": self.shipper.digest(tool)}
        return {"src": tool.source_digest}

    def _put_back(self, batch: list[_Entry]) -> None:
        """A pass failed on the broker: its unsent nodes go first in the next one."""
        for entry in reversed(batch):
            if entry[0].key in self._unsent:
                self._outbox.appendleft(entry)

    def _fail_unsent(self, exc: BaseException) -> None:
        entries = [(job, on_done) for job, on_done, _ in self._waiting]
        entries.extend(self._outbox)
        self._waiting = []
        self._outbox.clear()
        self._fail(entries, exc)

    def _fail(self, entries: list[_Entry], exc: BaseException, *, retryable: bool = True) -> None:
        for job, on_done in entries:
            if job.key in self._unsent:
                self._unsent.discard(job.key)
                on_done(job, NodeOutcome(failure=failure_from(exc, retryable=retryable)))

    # -- publishing --------------------------------------------------------------------
    async def _publish(self, batch: list[_Entry]) -> None:
        """Encode and send a batch of ready nodes in one pipelined round trip (see above)."""
        unsent = self._unsent
        encoded: list[_Encoded] = []
        runs: set[str] = set()
        for job, on_done in batch:
            if job.key not in unsent:
                continue  # cancelled while an earlier node of the batch was offloaded
            found = await self._encode(job, on_done)
            if found is not None:
                encoded.append((job, on_done, *found))
                runs.add(job.run_id)
        for run_id in runs:
            await self._follower.subscribe(run_id)
        # every await is behind us: what was cancelled meanwhile is not sent (and forgotten)
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        messages: list[Sent] = []
        uploaded = self._queue_code(pipe, encoded)
        sent: dict[str, dict[str, bytes]] = {}
        pushes: list[tuple[str, bytes, bool]] = []
        try:
            self._build(messages, encoded, sent, pushes)
            records = self.records
            if records is not None:  # before the messages: an outcome overwrites its entry
                for run_id, entries in sent.items():
                    records.queue_sent(pipe, run_id, entries)
            for queue, envelope, front in pushes:
                self._queue_envelope(pipe, queue, envelope, front=front)
            if messages:
                with closed_transport_is_a_connection_error():
                    await pipe.execute()
        except BaseException:
            # not (or maybe not all) sent: forget them; _run puts the batch back or fails it
            for message in messages:
                for pending in self._table.drop_message(message):
                    unsent.add(pending.job.key)
            if self.shipper is not None:
                self.shipper.forget_written(uploaded)
            raise

    def _queue_code(self, pipe: Any, encoded: list[_Encoded]) -> list[str]:
        """Queue the code of the batch's notebook tools on ``pipe``, ahead of the messages
        that name it (one connection, in order: a worker never sees a message first)."""
        shipper = self.shipper
        if shipper is None:
            return []
        digests = {
            shipper.digest(job.tool)
            for job, _, _, _ in encoded
            if self._task_name(job.tool) == SHIPPED_TASK
        }
        due = shipper.uploads(digests)
        for digest, blob in due:
            pipe.set(self._keys.shipped_code(digest), blob, ex=int(shipper.ttl))
        return [digest for digest, _ in due]

    def _build(
        self,
        messages: list[Sent],
        encoded: list[_Encoded],
        sent: dict[str, dict[str, bytes]],
        pushes: list[tuple[str, bytes, bool]],
    ) -> None:
        """Make the batch's messages (``pushes``: queue, envelope, to the front?) and their
        nodes' record entries (``sent``, by run): packs where they pay, single nodes else."""
        unsent = self._unsent
        packable: dict[tuple[str, str], list[_Encoded]] = {}
        for entry in encoded:
            job = entry[0]
            if job.key not in unsent:
                continue
            unsent.discard(job.key)
            queue = self._keys.tool_queue(job.tool.policy.queue)
            if job.timeout is None:
                packable.setdefault((job.tool.name, queue), []).append(entry)
            else:
                self._add_task(messages, entry, queue, sent, pushes)
        for (tool_name, queue), entries in packable.items():
            size = self._pack_size(queue, len(entries))
            if size < 2:
                for entry in entries:
                    self._add_task(messages, entry, queue, sent, pushes)
                continue
            for start in range(0, len(entries), size):
                pack = entries[start : start + size]
                self._add_pack(messages, tool_name, pack, queue, sent, pushes)

    async def _encode(
        self, job: NodeJob, on_done: DoneCallback
    ) -> tuple[dict[str, Any], str] | None:
        """The node's arguments as wire JSON (large values offloaded) and its identity (""
        without run records); None if it failed (also when its notebook tool cannot be
        pickled for shipping)."""
        try:
            if self._task_name(job.tool) == SHIPPED_TASK:
                assert self.shipper is not None
                self.shipper.digest(job.tool)  # pickled now: a failure is this node's
            kwargs: dict[str, Any] = codec.encode(job.args, where=f"node {job.node_id!r} argument")
        except Exception as exc:  # a value that cannot be encoded: retrying cannot help
            self._unsent.discard(job.key)
            on_done(job, NodeOutcome(failure=failure_from(exc, retryable=False)))
            return None
        # the identity hashes the arguments before offloading, as a resumed run computes it
        ident = node_ident(job.tool.source_digest, job.node_id, kwargs) if self.records else ""
        threshold = self._settings.offload_threshold
        if not offload.needs_offload(kwargs, threshold):
            return kwargs, ident
        try:
            return await self._offloads.offload(job, kwargs, threshold), ident
        except BROKER_ERRORS:
            raise  # the broker (also the artifact store) is down: retried with the batch
        except Exception as exc:  # e.g. a full disk under the filesystem store: may pass later
            self._unsent.discard(job.key)
            on_done(job, NodeOutcome(failure=failure_from(exc)))
            return None

    def _add_task(
        self,
        messages: list[Sent],
        entry: _Encoded,
        queue: str,
        sent: dict[str, dict[str, bytes]],
        pushes: list[tuple[str, bytes, bool]],
    ) -> None:
        """One node, one Celery message (with the tool's time limits)."""
        job, on_done, kwargs, ident = entry
        task_id = uuid.uuid4().hex
        task_name = self._task_name(job.tool)
        kwargs[META] = meta = {
            **self._message_meta(job.tool, task_name),
            **node_meta(job),
        }
        if ident:
            meta["ident"] = ident
            self._sent(sent, job, task_id, task_id, queue, ident)
        timeout = job.timeout
        envelope = task_envelope(
            task_id=task_id,
            task_name=task_name,
            tool_name=job.tool.name,
            kwargs=kwargs,
            queue=queue,
            time_limit=timeout + TIMEOUT_GRACE if timeout else None,
            # async tools time themselves out; Celery's soft limit is the fallback
            soft_time_limit=timeout + 1 if timeout and job.tool.is_async else timeout,
            kwargs_repr=node_kwargs_repr(kwargs[META], kwargs),
            delivery_tag=task_id,
        )
        pushes.append((queue, envelope, take_marks(self._front, [job])))
        message = Sent(task_id, queue)
        self._table.add(message, ((task_id, job, on_done),))
        messages.append(message)

    def _add_pack(
        self,
        messages: list[Sent],
        tool_name: str,
        entries: list[_Encoded],
        queue: str,
        sent: dict[str, dict[str, bytes]],
        pushes: list[tuple[str, bytes, bool]],
    ) -> None:
        """Several nodes of one tool, one Celery message; each node keeps its own outcome id
        (``<pack id>.<index>``), so results, retries and events stay per node."""
        pack_id = uuid.uuid4().hex
        message = Sent(pack_id, queue)
        nodes = []
        carried = []
        for index, (job, on_done, kwargs, ident) in enumerate(entries):
            node_key = f"{pack_id}.{index}"
            node = node_meta(job)
            node["id"] = node_key
            node["args"] = kwargs
            if ident:
                node["ident"] = ident
                self._sent(sent, job, node_key, pack_id, queue, ident)
            nodes.append(node)
            carried.append((node_key, job, on_done))
        self._table.add(message, carried)
        tool = entries[0][0].tool
        task_name = self._task_name(tool)
        meta = {**self._message_meta(tool, task_name), "pack": nodes}
        envelope = task_envelope(
            task_id=pack_id,
            task_name=task_name,
            tool_name=tool_name,
            kwargs={META: meta},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr=pack_kwargs_repr(nodes),
            delivery_tag=pack_id,
        )
        pushes.append((queue, envelope, take_marks(self._front, [e[0] for e in entries])))
        messages.append(message)

    def _message_meta(self, tool: ToolSpec, task_name: str) -> dict[str, Any]:
        meta = {
            **message_meta(self._client_id, self._lease),
            **self._code_meta(tool, task_name),
        }
        if self.records is not None:  # workers write outcomes into the record, this long
            meta["rec"] = self.records.ttl
        return meta

    def _sent(
        self,
        sent: dict[str, dict[str, bytes]],
        job: NodeJob,
        outcome_id: str,
        task_id: str,
        queue: str,
        ident: str,
    ) -> None:
        sent.setdefault(job.run_id, {})[job.node_id] = sent_entry(
            outcome_id=outcome_id,
            task_id=task_id,
            queue=queue,
            client=self._client_id,
            ident=ident,
            attempt=job.attempt,
            tool=job.tool.name,
        )

    def _queue_envelope(self, pipe: Any, queue: str, envelope: bytes, *, front: bool) -> None:
        if front:
            pipe.rpush(queue, envelope)
        else:
            pipe.lpush(queue, envelope)
        self._stats["published"] += 1
        self._stats["published_bytes"] += len(envelope)

    def _pack_size(self, queue: str, ready: int) -> int:
        """Nodes per message for ``ready`` nodes of one tool: at least 4 messages per slot."""
        if self._settings.max_pack < 2:
            return 1
        slots = max(1, self._workers.slots.get(queue, 1))
        return min(self._settings.max_pack, ready // (PACKS_PER_SLOT * slots))
