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

**Messages.** Which nodes travel together (packs of one tool's nodes in a fan-out) and what a
message carries are ``messages.py`` and ``stamps.py``; the code of notebook tools and the nodes'
entries in their runs' durable records go into the same pipeline, ahead of the messages.

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
from aethergraph.execution.celery.messages import Encoded, MessageMaker
from aethergraph.execution.celery.offloads import RunOffloads
from aethergraph.execution.celery.run_record import RunRecords
from aethergraph.execution.celery.stamps import Stamps
from aethergraph.execution.shipping import SHIPPED_TASK, CodeShipper
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.services.builtins.redis_backends import closed_transport_is_a_connection_error
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph")

WAIT_POLL = 0.2  # seconds between looks for a worker while nodes wait for one

_Entry = tuple[NodeJob, DoneCallback]


def no_worker_error(job: NodeJob, waited: float, shipping: bool) -> WorkerUnavailableError:
    queue = job.tool.policy.queue or DEFAULT_QUEUE
    if job.tool.in_main:
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
        self._keys = keys
        self._client_id = client_id
        self._table = table
        self._workers = workers
        self._follower = follower
        self._offloads = offloads
        self._background = background
        self._stats = stats
        self._outage = Outage(settings.broker_url or "", settings.broker_outage_timeout)
        self.stamps = Stamps(
            keys=keys,
            client_id=client_id,
            lease=settings.client_lease,
            shipper=shipper,
            records=records,
        )
        self.redis: aioredis.Redis | None = None  # set by the executor's start()
        self._outbox: deque[_Entry] = deque()
        self._waiting: list[tuple[NodeJob, DoneCallback, float]] = []
        self._unsent: set[str] = set()  # keys of submitted nodes not published yet
        self._front: set[str] = set()  # keys of nodes sent again: they jump the queue
        self._maker = MessageMaker(
            settings=settings,
            keys=keys,
            table=table,
            workers=workers,
            stamps=self.stamps,
            front=self._front,
        )
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
            if workers.serves(job, self.stamps.task_name(job.tool)):
                batch.append((job, on_done))
            elif now >= deadline:
                unsent.discard(job.key)
                exc = no_worker_error(
                    job, self._settings.worker_wait, self.stamps.shipper is not None
                )
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
            if workers.serves(job, self.stamps.task_name(job.tool)):
                batch.append((job, on_done))
            else:
                self._waiting.append((job, on_done, now + wait))
        return batch

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
        encoded: list[Encoded] = []
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
        uploaded: list[str] = []
        try:
            made = self._maker.build(encoded, unsent)
            messages = made.messages
            tools = [e[0].tool for e in encoded]
            uploaded = self.stamps.queue_before_messages(pipe, tools, made.sent)
            for queue, envelope, front in made.pushes:
                self._queue_envelope(pipe, queue, envelope, front=front)
            if messages:
                with closed_transport_is_a_connection_error():
                    await pipe.execute()
        except BaseException:
            # not (or maybe not all) sent: forget them; _run puts the batch back or fails it
            for message in messages:
                for pending in self._table.drop_message(message):
                    unsent.add(pending.job.key)
            self.stamps.publish_failed(uploaded)
            raise

    async def _encode(
        self, job: NodeJob, on_done: DoneCallback
    ) -> tuple[dict[str, Any], str] | None:
        """The node's arguments as wire JSON (large values offloaded) and its identity (""
        without run records); None if it failed (also when its notebook tool cannot be
        pickled for shipping)."""
        try:
            if self.stamps.task_name(job.tool) == SHIPPED_TASK:
                assert self.stamps.shipper is not None
                self.stamps.shipper.digest(job.tool)  # pickled now: a failure is this node's
            kwargs: dict[str, Any] = codec.encode(job.args, where=f"node {job.node_id!r} argument")
        except Exception as exc:  # a value that cannot be encoded: retrying cannot help
            self._unsent.discard(job.key)
            on_done(job, NodeOutcome(failure=failure_from(exc, retryable=False)))
            return None
        # the identity hashes the arguments before offloading, as a resumed run computes it
        ident = self.stamps.ident(job, kwargs)
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

    def _queue_envelope(self, pipe: Any, queue: str, envelope: bytes, *, front: bool) -> None:
        if front:
            pipe.rpush(queue, envelope)
        else:
            pipe.lpush(queue, envelope)
        self._stats["published"] += 1
        self._stats["published_bytes"] += len(envelope)
