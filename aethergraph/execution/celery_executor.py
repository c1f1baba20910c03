"""``CeleryExecutor``: tool nodes as Celery tasks on worker pools, results pushed back via Redis.

Dispatch: ready nodes are collected for the current loop iteration, their arguments encoded
(a value that cannot be encoded fails its node at once, naming the argument; large values go to
the shared artifact store and travel by reference), and the whole batch is published as Celery
task messages in one pipelined Redis round trip (see ``wire``); many ready nodes of one tool
share messages ("packs", see ``_publish``).

Results: every worker pushes each finished attempt onto this client's result list; one
background task pops them (a blocking pop that takes a whole burst at once) and resolves the
nodes — no per-task polling, no ``AsyncResult.get()``.

Liveness: workers heartbeat the tools and queues they serve. A node whose tool no live worker
serves waits up to ``AETHERGRAPH_WORKER_WAIT`` seconds for one and then fails with a message
saying which worker to start — never a silent hang.

Live context: channel messages and node logs that tools emit on workers reach this process
through the run's Pub/Sub channel and are replayed on the local channel and logger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from aethergraph import codec
from aethergraph.errors import ConfigurationError, NodeTimeoutError
from aethergraph.execution.base import (
    DoneCallback,
    Executor,
    NodeFailure,
    NodeJob,
    NodeOutcome,
    failure_from,
)
from aethergraph.execution.wire import META, short_repr, task_envelope
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.services.builtins.channel import ChannelMessage
from aethergraph.services.node_logger import node_logger
from aethergraph.services.runtime.registry import BuiltinBackends, current_services
from aethergraph.settings import Settings, get_settings

log = logging.getLogger("aethergraph")

WORKERS_REFRESH = 1.0  # seconds a snapshot of live workers is trusted
TIMEOUT_GRACE = 5.0  # the client-side backstop fires this long after a node's timeout
DRAIN = 256  # results popped per round trip after a blocking pop returned


class _Pending:
    __slots__ = ("job", "on_done", "timer")

    def __init__(self, job: NodeJob, on_done: DoneCallback) -> None:
        self.job = job
        self.on_done = on_done
        self.timer: asyncio.TimerHandle | None = None


class CeleryExecutor(Executor):
    """Runs nodes on ``aethergraph worker`` pools through Celery over Redis."""

    name = "celery"

    def __init__(self, broker_url: str | None = None, *, settings: Settings | None = None) -> None:
        base = settings or get_settings()
        if broker_url is not None:
            base = base.model_copy(update={"broker_url": broker_url})
        if not base.broker_url:
            raise ConfigurationError(
                "the Celery executor needs a broker: set AETHERGRAPH_BROKER_URL=redis://host:6379/0"
                " or pass CeleryExecutor(broker_url=...), or use a LocalCluster"
            )
        self.settings = base
        self.keys = Keys(base.namespace)
        self.client_id = uuid.uuid4().hex
        self._results_key = self.keys.client_results(self.client_id)
        self._redis: aioredis.Redis | None = None
        self._blocking: aioredis.Redis | None = None
        self._pending: dict[str, _Pending] = {}
        self._task_of: dict[str, str] = {}  # job.key -> its task id / packed node key
        self._cancelled: set[str] = set()  # keys of jobs cancelled before they were published
        self._outbox: deque[tuple[NodeJob, DoneCallback]] = deque()
        self._waiting: list[tuple[NodeJob, DoneCallback, float]] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._served: dict[str, set[str]] = {}
        self._slots: dict[str, int] = {}  # live worker processes (pool slots) per queue
        self._packs: dict[str, set[str]] = {}  # pack id -> its nodes still awaited
        self._blmpop = False  # the server has BLMPOP (Redis >= 7)
        self._revoking: list[str] = []  # task ids to revoke at the end of this loop iteration
        self._served_at = 0.0
        self._subscriber: Any = None
        self._followed: dict[str, int] = {}
        self._subscribed: set[str] = set()
        self._app: Any = None
        self._previous_builtins: BuiltinBackends | None = None
        #: traffic counters: messages and bytes published, results and bytes received
        self.stats = {"published": 0, "published_bytes": 0, "results": 0, "result_bytes": 0}

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        url = self.settings.broker_url or ""
        self._redis = aioredis.Redis.from_url(url)
        # blocking pops wait up to 5 s: this connection must not time out before they return
        self._blocking = aioredis.Redis.from_url(url, socket_timeout=None)
        server = await self._redis.info("server")
        self._blmpop = int(str(server.get("redis_version", "0")).split(".")[0]) >= 7
        self._use_shared_builtins()
        from aethergraph.services.builtins.redis_channel import RunEventSubscriber

        self._subscriber = RunEventSubscriber(url, self.keys, self._on_remote_message)
        await self._subscriber.start()
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _use_shared_builtins(self) -> None:
        """Memory, kv and artifacts must be the ones the workers use: switch to Redis."""
        from aethergraph.services.builtins.redis_backends import (
            RedisArtifactStore,
            RedisKV,
            RedisMemoryBackend,
        )

        url = self.settings.broker_url or ""
        self._previous_builtins = current_services().builtins
        update: dict[str, Any] = {
            "memory": RedisMemoryBackend(url, self.keys),
            "kv": RedisKV(url, self.keys),
        }
        if self.settings.artifacts_backend != "filesystem":
            update["artifacts"] = RedisArtifactStore(url, self.keys)
        current_services().configure_builtins(**update)

    async def close(self) -> None:
        for task in (self._listener, self._dispatcher):
            if task is not None:
                task.cancel()
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()
        for client in (self._redis, self._blocking):
            if client is not None:
                await client.aclose()
        previous = self._previous_builtins
        if previous is not None:
            self._previous_builtins = None
            current_services().configure_builtins(
                memory=previous.memory, kv=previous.kv, artifacts=previous.artifacts
            )

    # -- dispatch ----------------------------------------------------------------------
    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        for job in jobs:
            self._outbox.append((job, on_done))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        while self._outbox or self._waiting:
            if time.monotonic() - self._served_at > WORKERS_REFRESH:
                await self._refresh_workers()
            batch: list[tuple[NodeJob, DoneCallback]] = []
            now = time.monotonic()
            still_waiting = []
            for job, on_done, deadline in self._waiting:
                if self._serves(job):
                    batch.append((job, on_done))
                elif now >= deadline:
                    self._no_worker(job, on_done)
                else:
                    still_waiting.append((job, on_done, deadline))
            self._waiting = still_waiting
            while self._outbox:
                job, on_done = self._outbox.popleft()
                if self._serves(job):
                    batch.append((job, on_done))
                else:
                    self._waiting.append((job, on_done, now + self.settings.worker_wait))
            if batch:
                await self._publish(batch)
            elif self._waiting and not self._outbox:
                await asyncio.sleep(0.2)  # wait for a worker to come up (heartbeats)

    def _serves(self, job: NodeJob) -> bool:
        queue = self.keys.tool_queue(job.tool.policy.queue)
        return job.tool.name in self._served.get(queue, ())

    def _no_worker(self, job: NodeJob, on_done: DoneCallback) -> None:
        queue = job.tool.policy.queue or DEFAULT_QUEUE
        exc = ConfigurationError(
            f"no live worker serves tool {job.tool.name!r} on queue {queue!r} (waited "
            f"{self.settings.worker_wait:g}s); start one with: aethergraph worker --tools "
            f"<module defining {job.tool.name}> -Q {queue}"
        )
        on_done(job, NodeOutcome(failure=failure_from(exc)))

    async def _refresh_workers(self) -> None:
        assert self._redis is not None
        served: dict[str, set[str]] = {}
        slots: dict[str, int] = {}
        keys = [key async for key in self._redis.scan_iter(match=self.keys.workers_pattern())]
        if keys:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, "tools", "queues", "concurrency")
            for tools_raw, queues_raw, concurrency in await pipe.execute():
                if tools_raw is None or queues_raw is None:
                    continue
                tools = set(json.loads(tools_raw))
                for queue in json.loads(queues_raw):
                    served.setdefault(queue, set()).update(tools)
                    slots[queue] = slots.get(queue, 0) + int(concurrency or 1)
        self._served = served
        self._slots = slots
        self._served_at = time.monotonic()

    async def _publish(self, batch: list[tuple[NodeJob, DoneCallback]]) -> None:
        """Encode and send a batch of ready nodes in one pipelined round trip.

        Many ready nodes of one tool (a fan-out) are *packed*: up to ``max_pack`` of them travel
        in one Celery message and the worker runs them one after another, so Celery's fixed
        per-message cost (broker round trips, acks, events, pool hand-off) is paid once per pack
        instead of once per node. Packs are made only when there are at least four per live
        worker slot, so every slot still gets work; nodes with a timeout are never packed (a
        timeout is a per-message limit).
        """
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        sent: list[tuple[str, _Pending]] = []
        packable: dict[tuple[str, str], list[tuple[NodeJob, DoneCallback, dict[str, Any]]]] = {}
        for job, on_done in batch:
            if job.key in self._cancelled:
                self._cancelled.discard(job.key)
                continue
            kwargs = await self._encode(job, on_done)
            if kwargs is None:
                continue
            await self._follow(job.run_id)
            queue = self.keys.tool_queue(job.tool.policy.queue)
            if job.timeout is None:
                packable.setdefault((job.tool.name, queue), []).append((job, on_done, kwargs))
            else:
                self._add_task(pipe, sent, job, on_done, kwargs, queue)
        for (tool_name, queue), entries in packable.items():
            size = self._pack_size(queue, len(entries))
            if size < 2:
                for job, on_done, kwargs in entries:
                    self._add_task(pipe, sent, job, on_done, kwargs, queue)
                continue
            for start in range(0, len(entries), size):
                self._add_pack(pipe, sent, tool_name, entries[start : start + size], queue)
        for task_id, pending in sent:
            self._pending[task_id] = pending
        if sent:
            try:
                await pipe.execute()
            except Exception as exc:
                for task_id, pending in sent:
                    self._pending.pop(task_id, None)
                    pending.on_done(pending.job, NodeOutcome(failure=failure_from(exc)))

    async def _encode(self, job: NodeJob, on_done: DoneCallback) -> dict[str, Any] | None:
        """The node's arguments as wire JSON (large values offloaded); None if it failed."""
        threshold = self.settings.offload_threshold
        try:
            kwargs: dict[str, Any] = codec.encode(job.args, where=f"node {job.node_id!r} argument")
            if codec.needs_offload(kwargs, threshold):
                store = current_services().builtins.artifacts
                kwargs = await codec.offload_entries(kwargs, store, threshold=threshold)
            return kwargs
        except Exception as exc:  # fails this node at submit time; retrying cannot help
            failure = failure_from(exc, retryable=False)
            on_done(job, NodeOutcome(failure=failure))
            return None

    def _node_meta(self, job: NodeJob) -> dict[str, Any]:
        return {
            "run_id": job.run_id,
            "graph_id": job.graph_id,
            "node_id": job.node_id,
            "attempt": job.attempt,
            "timeout": job.timeout,
        }

    def _add_task(
        self,
        pipe: Any,
        sent: list[tuple[str, _Pending]],
        job: NodeJob,
        on_done: DoneCallback,
        kwargs: dict[str, Any],
        queue: str,
    ) -> None:
        """One node, one Celery message (with the tool's time limits)."""
        task_id = uuid.uuid4().hex
        kwargs[META] = {"client": self.client_id, **self._node_meta(job)}
        timeout = job.timeout
        envelope = task_envelope(
            task_id=task_id,
            task_name=job.tool.name,
            kwargs=kwargs,
            queue=queue,
            time_limit=timeout + TIMEOUT_GRACE if timeout else None,
            # async tools time themselves out; Celery's soft limit is the fallback
            soft_time_limit=timeout + 1 if timeout and job.tool.is_async else timeout,
            kwargs_repr=short_repr(kwargs),
        )
        self._queue_envelope(pipe, queue, envelope)
        self._task_of[job.key] = task_id
        sent.append((task_id, _Pending(job, on_done)))

    def _add_pack(
        self,
        pipe: Any,
        sent: list[tuple[str, _Pending]],
        tool_name: str,
        entries: list[tuple[NodeJob, DoneCallback, dict[str, Any]]],
        queue: str,
    ) -> None:
        """Several nodes of one tool, one Celery message; each node keeps its own outcome id
        (``<pack id>.<index>``), so results, retries and events stay per node."""
        pack_id = uuid.uuid4().hex
        nodes = []
        for index, (job, on_done, kwargs) in enumerate(entries):
            node_key = f"{pack_id}.{index}"
            nodes.append({"id": node_key, **self._node_meta(job), "args": kwargs})
            self._task_of[job.key] = node_key
            sent.append((node_key, _Pending(job, on_done)))
        self._packs[pack_id] = {node["id"] for node in nodes}
        envelope = task_envelope(
            task_id=pack_id,
            task_name=tool_name,
            kwargs={META: {"client": self.client_id, "pack": nodes}},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr=f"<{len(nodes)} nodes: "
            + ", ".join(n["node_id"] for n in nodes[:3])
            + (", ...>" if len(nodes) > 3 else ">"),
        )
        self._queue_envelope(pipe, queue, envelope)

    def _queue_envelope(self, pipe: Any, queue: str, envelope: str) -> None:
        pipe.lpush(queue, envelope)
        self.stats["published"] += 1
        self.stats["published_bytes"] += len(envelope)

    def _pack_size(self, queue: str, ready: int) -> int:
        """Nodes per message for ``ready`` nodes of one tool: at least 4 messages per slot."""
        if self.settings.max_pack < 2:
            return 1
        slots = max(1, self._slots.get(queue, 1))
        return min(self.settings.max_pack, ready // (4 * slots))

    def _settled(self, node_key: str) -> str | None:
        """Forget a packed node; return its pack's id once no node of the pack is wanted."""
        pack_id, dot, _ = node_key.partition(".")
        if not dot:
            return None
        live = self._packs.get(pack_id)
        if live is None:
            return None
        live.discard(node_key)
        if live:
            return None
        del self._packs[pack_id]
        return pack_id

    # -- results -----------------------------------------------------------------------
    async def _listen(self) -> None:
        assert self._blocking is not None
        client = self._blocking
        while True:
            try:
                raws: list[Any]
                if self._blmpop:  # Redis >= 7: a burst in the same round trip
                    popped = await client.blmpop(
                        5, 1, self._results_key, direction="LEFT", count=DRAIN
                    )
                    if popped is None:
                        continue
                    raws = list(popped[1])
                else:
                    item = await client.blpop([self._results_key], timeout=5)
                    if item is None:
                        continue
                    raws = [item[1]]
                    if len(self._pending) > 1:  # a burst may be waiting: take it too
                        more = await client.lpop(self._results_key, DRAIN)
                        if isinstance(more, list):
                            raws.extend(more)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("result listener: %s; retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for raw in raws:
                self._on_result(raw)

    def _on_result(self, raw: bytes | str) -> None:
        self.stats["results"] += 1
        self.stats["result_bytes"] += len(raw)
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("dropping malformed result message %r", raw[:200])
            return
        if message.get("started"):  # a tool with a timeout began: arm the backstop now
            started = self._pending.get(message.get("task_id", ""))
            if started is not None and started.job.timeout and started.timer is None:
                started.timer = asyncio.get_running_loop().call_later(
                    started.job.timeout + TIMEOUT_GRACE, self._time_out, message["task_id"]
                )
            return
        task_id = message.get("task_id", "")
        pending = self._pending.pop(task_id, None)
        if pending is None:
            return  # an attempt we gave up on (cancelled, timed out)
        self._settled(task_id)
        if pending.timer is not None:
            pending.timer.cancel()
        job = pending.job
        self._task_of.pop(job.key, None)
        self._unfollow(job.run_id)
        failure = message.get("failure")
        if failure:
            outcome = NodeOutcome(failure=NodeFailure.from_dict(failure))
        else:
            try:
                outputs = codec.decode(message.get("outputs") or {})
                outcome = NodeOutcome(outputs)
            except Exception as exc:
                outcome = NodeOutcome(failure=failure_from(exc))
        pending.on_done(job, outcome)

    def _time_out(self, task_id: str) -> None:
        pending = self._pending.pop(task_id, None)
        if pending is None:
            return
        job = pending.job
        self._task_of.pop(job.key, None)
        self._revoke(task_id)
        self._unfollow(job.run_id)
        exc = NodeTimeoutError(f"tool {job.tool.name!r} exceeded its timeout of {job.timeout}s")
        pending.on_done(job, NodeOutcome(failure=failure_from(exc)))

    # -- cancellation --------------------------------------------------------------------
    def cancel(self, job: NodeJob) -> None:
        task_id = self._task_of.pop(job.key, None)
        if task_id is None:  # not published yet: the publisher drops it
            self._cancelled.add(job.key)
            return
        pending = self._pending.pop(task_id, None)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            self._unfollow(job.run_id)
        if "." not in task_id:
            self._revoke(task_id)
            return
        # a packed node: the message is stopped once none of its nodes is wanted any more
        # (until then a cancelled node may still run; its outcome is ignored)
        pack_id = self._settled(task_id)
        if pack_id is not None:
            self._revoke(pack_id)

    def _revoke(self, task_id: str) -> None:
        """Stop a task: dropped if still queued; if running on a prefork pool, its process gets
        the soft-limit signal, which raises inside a sync tool and cancels an async one — either
        way the tool's ``finally`` blocks run and the worker process lives on. (Thread and solo
        pools cannot interrupt a running task; it finishes and its outcome is ignored.)

        Revokes requested in one loop iteration (a whole run being cancelled) go out as one
        broadcast, so a slot freed by stopping one task cannot pick up another one that is
        about to be revoked."""
        if not self._revoking:
            asyncio.get_running_loop().call_soon(self._send_revokes)
        self._revoking.append(task_id)

    def _send_revokes(self) -> None:
        ids, self._revoking = self._revoking, []
        if self._app is None:
            from aethergraph.execution.celery_app import make_celery_app

            self._app = make_celery_app(self.settings)
        app = self._app
        asyncio.get_running_loop().run_in_executor(
            None, lambda: app.control.revoke(ids, terminate=True, signal="SIGUSR1")
        )

    # -- live messages from workers ------------------------------------------------------
    async def _follow(self, run_id: str) -> None:
        self._followed[run_id] = self._followed.get(run_id, 0) + 1
        if run_id not in self._subscribed and self._subscriber is not None:
            self._subscribed.add(run_id)
            await self._subscriber.add_run(run_id)

    def _unfollow(self, run_id: str) -> None:
        count = self._followed.get(run_id, 0) - 1
        if count > 0:
            self._followed[run_id] = count
            return
        self._followed.pop(run_id, None)
        if self._subscriber is not None:
            # late messages can trail the result: stop following a little later
            loop = asyncio.get_running_loop()
            loop.call_later(2.0, self._maybe_remove, run_id)

    def _maybe_remove(self, run_id: str) -> None:
        if run_id not in self._followed and run_id in self._subscribed:
            self._subscribed.discard(run_id)
            if self._subscriber is not None:
                asyncio.get_running_loop().create_task(self._unsubscribe(run_id))

    async def _unsubscribe(self, run_id: str) -> None:
        subscriber = self._subscriber
        if subscriber is None:
            return
        try:
            await subscriber.remove_run(run_id)
        except Exception:  # closed meanwhile: nothing left to stop
            pass

    async def _on_remote_message(self, message: ChannelMessage) -> None:
        if message.kind == "log":
            payload = message.payload if isinstance(message.payload, dict) else {}
            node_logger(message.run_id, message.graph_id, message.node_id).log(
                int(payload.get("level", logging.INFO)),
                str(payload.get("msg", "")),
                extra={"remote": True},
            )
            return
        await current_services().builtins.channel.publish(message)
