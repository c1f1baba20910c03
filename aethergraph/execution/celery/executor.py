"""``CeleryExecutor``: tool nodes as Celery tasks on worker pools, results pushed back via Redis.

The facade: it owns the lifecycle and wires the concepts of this package together — the
dispatcher (``dispatch``), the table of nodes in flight (``inflight``), the result listener and
timeout backstop (``results``), re-sending nodes whose message will not report (``recovery``)
when its worker died (``orphans``) or the broker lost it (``lost``), worker discovery
(``discovery``), Pub/Sub following of runs (``follow``) and batched revokes (``revoke``).

**Nothing process-wide changes.** Code of a run on this executor (its graph body, materializing
offloaded values) must share memory, kv and artifacts with the workers, so :meth:`builtins`
returns the Redis-backed backends the workers use (artifacts per ``settings.artifacts_backend``)
plus this process's own channel; the executor owns them and closes them in :meth:`close`. The
process's service registry is only read (to replay workers' channel messages into its channel),
never modified, so in-process and distributed runs coexist in one process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.execution.base import DoneCallback, Executor, NodeJob
from aethergraph.execution.celery.background import Background
from aethergraph.execution.celery.broker import open_client
from aethergraph.execution.celery.discovery import LiveWorkers
from aethergraph.execution.celery.dispatch import Dispatcher
from aethergraph.execution.celery.follow import Follower
from aethergraph.execution.celery.inflight import InFlight
from aethergraph.execution.celery.lease import Lease
from aethergraph.execution.celery.live_runs import LiveRuns
from aethergraph.execution.celery.lost import LostMessages
from aethergraph.execution.celery.offloads import RunOffloads
from aethergraph.execution.celery.orphans import Orphans
from aethergraph.execution.celery.recovery import Recovery
from aethergraph.execution.celery.results import POP_WAIT, ResultListener
from aethergraph.execution.celery.resume import Resumer
from aethergraph.execution.celery.revoke import Revoker
from aethergraph.execution.celery.run_record import RunRecords
from aethergraph.execution.shipping import CodeShipper
from aethergraph.keys import Keys
from aethergraph.services.builtins.artifacts import ArtifactStore, FilesystemArtifactStore
from aethergraph.services.builtins.redis_backends import (
    RedisArtifactStore,
    RedisKV,
    RedisMemoryBackend,
)
from aethergraph.services.runtime.registry import BuiltinBackends, current_services
from aethergraph.settings import Settings, get_settings

REVOKE_FLUSH = 5.0  # seconds close() waits for pending revokes to reach the broker


log = logging.getLogger("aethergraph")


class CeleryExecutor(Executor):
    """Runs nodes on ``aethergraph worker`` pools through Celery over Redis."""

    name = "celery"
    reports_running = True  # workers send started notices (worker/started.py)

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        settings: Settings | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        """``artifacts``: the store runs on this executor and its workers share (default: Redis,
        or the filesystem store when ``artifacts_backend`` is ``filesystem``); one given here
        stays the caller's to close."""
        base = settings or get_settings()
        if broker_url is not None:
            base = base.updated(broker_url=broker_url)  # validated, like the environment
        if not base.broker_url:
            raise ConfigurationError(
                "the Celery executor needs a broker: set AETHERGRAPH_BROKER_URL=redis://host:6379/0"
                " or pass CeleryExecutor(broker_url=...), or use a LocalCluster"
            )
        url = base.broker_url
        self.settings = base
        self.keys = Keys(base.namespace)
        self.client_id = uuid.uuid4().hex
        self._results_key = self.keys.client_results(self.client_id)
        #: traffic counters: messages and bytes published, results and bytes received
        self.stats = {"published": 0, "published_bytes": 0, "results": 0, "result_bytes": 0}
        # the built-ins runs on this executor share with the workers (owned; closed in close())
        self._memory = RedisMemoryBackend(url, self.keys)
        self._kv = RedisKV(url, self.keys)
        self._owned: list[RedisMemoryBackend | RedisKV | RedisArtifactStore] = [
            self._memory,
            self._kv,
        ]
        offload_store: ArtifactStore | None = None  # arguments the client offloads, if apart
        if artifacts is None:
            if base.artifacts_backend == "filesystem":
                artifacts = FilesystemArtifactStore(base.artifacts_dir)
            else:
                artifacts = RedisArtifactStore(url, self.keys)
                offload_store = RedisArtifactStore(url, self.keys, ttl=base.offload_ttl)
                self._owned += [artifacts, offload_store]
        self._artifacts = artifacts
        self._background = Background()
        self._follower = Follower(url, self.keys, self._background)
        self._table = InFlight(self._follower.hold, self._released)
        self._offloads = RunOffloads(
            offload_store or artifacts,
            self.keys,
            release=offload_store is not None,
            busy=self._run_busy,
            spawn=self._background.spawn,
        )
        self._revoker = Revoker(base, self._background)
        #: durable run records (``run_record.py``); None with AETHERGRAPH_RUN_TTL=0
        self._records = RunRecords(self.keys, base.run_ttl) if base.run_ttl > 0 else None
        self.durable = self._records is not None  # runs can be resumed, attached, listed
        self._dispatcher = Dispatcher(
            settings=base,
            keys=self.keys,
            client_id=self.client_id,
            table=self._table,
            workers=LiveWorkers(self.keys),
            follower=self._follower,
            offloads=self._offloads,
            background=self._background,
            stats=self.stats,
            shipper=CodeShipper() if base.ship_code else None,
            records=self._records,
        )
        self._resumer = (
            Resumer(
                records=self._records,
                table=self._table,
                follower=self._follower,
                dispatch=self._dispatcher.submit,
                adopt=self._adopt,
                client_id=self.client_id,
            )
            if self._records is not None
            else None
        )
        self.recovery = Recovery(
            table=self._table,
            resubmit=lambda jobs, on_done: self._dispatcher.submit(jobs, on_done, front=True),
            in_flight=self._in_flight_key,
            max_kills=base.max_worker_kills,
        )
        self._clients: list[aioredis.Redis] = []
        self._listener: ResultListener | None = None
        self._lost: LostMessages | None = None
        self._orphans: Orphans | None = None
        self._lease: Lease | None = None
        self._live_runs = LiveRuns(self.keys, self.client_id)
        self._record_writes: dict[str, asyncio.Task[Any]] = {}  # a run's last header write

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._clients:
            return
        url = self.settings.broker_url or ""
        commands = open_client(url)
        blocking = open_client(url, blocks_for=POP_WAIT)  # its pops wait up to POP_WAIT s
        self._clients = [commands, blocking]
        try:
            server = await commands.info("server")
            blmpop = int(str(server.get("redis_version", "0")).split(".")[0]) >= 7
            self._lease = Lease(commands, self.keys, self.client_id, self.settings.client_lease)
            await self._lease.renew()  # before the first message: workers check it
            await self._follower.start()
        except BaseException:
            await self._close_clients()
            raise
        self._dispatcher.redis = self._offloads.redis = commands
        self._listener = ResultListener(
            client=blocking,
            results_key=self._results_key,
            blmpop=blmpop,
            table=self._table,
            recovery=self.recovery,
            settings=self.settings,
            revoke=self._revoker.revoke,
            stats=self.stats,
        )
        self._lost = LostMessages(
            client=commands,
            keys=self.keys,
            results_key=self._results_key,
            table=self._table,
            recovery=self.recovery,
            interval=self.settings.lost_message_check,
            broker_url=url,
        )
        self._orphans = Orphans(
            client=commands, keys=self.keys, table=self._table, recovery=self.recovery
        )
        self._background.spawn(self._listener.run(), "result listener")
        self._background.spawn(self._lost.run(), "lost-message check")
        self._background.spawn(self._orphans.run(), "orphan check")
        self._background.spawn(self._lease.run(), "lease")
        self._background.spawn(self._live_runs.run(commands), "live runs")

    async def close(self) -> None:
        # first: revokes asked for must reach the workers even when the process exits next
        await self._revoker.flush(REVOKE_FLUSH)
        await self._dispatcher.stop()
        await self._follower.close()
        await self._background.cancel_all()
        if self._clients:  # what still shows as in flight is not, once this client is gone
            await self._live_runs.close(self._clients[0])
        if self._lease is not None:
            await self._lease.release()
            self._lease = None
        await self._close_clients()
        self._dispatcher.redis = self._offloads.redis = None
        self._listener = self._lost = self._orphans = None
        for backend in self._owned:
            await backend.aclose()

    async def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()

    def builtins(self) -> BuiltinBackends:
        """The workers' memory, kv and artifacts, and this process's own channel."""
        return BuiltinBackends(
            channel=current_services().builtins.channel,
            memory=self._memory,
            kv=self._kv,
            artifacts=self._artifacts,
        )

    # -- runs --------------------------------------------------------------------------
    def run_started(
        self, run_id: str, describe: Callable[[], dict[str, Any]], *, resume: bool = False
    ) -> None:
        if resume and self._resumer is None:
            super().run_started(run_id, describe, resume=True)  # raises: nothing to resume
        self._live_runs.started(run_id, describe)
        if self._dispatcher.stamps.shipper is not None:
            self._dispatcher.stamps.shipper.new_run()
        if self._resumer is not None and self._records is not None:
            if resume:
                self._resumer.begin(run_id)
            graph = str(describe().get("graph", ""))
            started = self._records.started(self._redis(), run_id, graph, self.client_id, resume)
            runtime_loop.submit(self._record_in_order(run_id, started))

    def run_ended(
        self, run_id: str, summary: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[Any] | None:
        """Mark the run ended in its record; the future is done once that is written."""
        self._live_runs.ended(run_id)
        if self._resumer is not None and self._records is not None:
            resumed = self._resumer.end(run_id)
            if resumed is not None:
                log.info("resumed run %s: %s", run_id, resumed.counts)
            ended = self._records.ended(self._redis(), run_id, summary or {})
            return runtime_loop.submit(self._record_in_order(run_id, ended, last=True))
        return None

    async def _record_in_order(
        self, run_id: str, write: Coroutine[Any, Any, None], *, last: bool = False
    ) -> None:
        """Write a run's record header after its previous write (the end never lands before
        the start: a short run's two writes race otherwise). On the runtime loop."""
        previous = self._record_writes.pop(run_id, None)
        if not last:
            self._record_writes[run_id] = asyncio.current_task()  # type: ignore[assignment]
        if previous is not None:
            await asyncio.wait([previous])
        await write

    def resumed_counts(self, run_id: str) -> dict[str, int] | None:
        """How the nodes of a resumed run went so far (reused, adopted, ran); tests, logs."""
        if self._resumer is None:
            return None
        resumption = self._resumer.runs.get(run_id)
        return dict(resumption.counts) if resumption is not None else None

    def _adopt(self, client_id: str) -> None:
        """Take over a (dead) client's result list and lease: see ``resume.py``."""
        if self._listener is not None and self._listener.adopt(self.keys.client_results(client_id)):
            if self._lease is not None:
                self._lease.adopt(self.keys.client_lease(client_id))
            self._background.spawn(self._lease_now_and_wake(), "adopt client")

    async def _lease_now_and_wake(self) -> None:
        if self._lease is not None:
            await self._lease.renew()
        # a no-op result wakes the blocking pop, which then pops the adopted list too
        await self._redis().rpush(self._results_key, b"{}")

    def _redis(self) -> aioredis.Redis:
        if not self._clients:
            raise RuntimeUsageError("the Celery executor is not started")
        return self._clients[0]

    # -- nodes -------------------------------------------------------------------------
    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        resumer = self._resumer
        if resumer is not None and resumer.runs and jobs and jobs[0].run_id in resumer.runs:
            self._background.spawn(resumer.route(self._redis(), jobs, on_done), "resume")
            return
        self._dispatcher.submit(jobs, on_done)

    def cancel(self, job: NodeJob) -> None:
        if self._dispatcher.cancel(job.key):
            return  # not published yet: it never will be
        pending, emptied = self._table.pop_job(job.key)
        # a packed node: its message is stopped once none of its nodes is wanted any more
        # (until then a cancelled node may still run; its outcome is ignored)
        if emptied is not None:
            self._revoker.revoke(emptied.task_id)
        if pending is not None and self._records is not None and self._clients:
            # its record entry says "sent" still: a resumed run would adopt and wait for it
            marked = self._records.cancelled(self._redis(), job.run_id, job.node_id, job.attempt)
            self._background.spawn(marked, "run record")

    def _released(self, run_id: str) -> None:
        """A node of ``run_id`` left the table (InFlight's release callback)."""
        if self._follower.release(run_id):
            self._offloads.settled(run_id)

    def _run_busy(self, run_id: str) -> bool:
        return self._follower.holds(run_id) or self._dispatcher.has_unsent(run_id)

    def _in_flight_key(self, job_key: str) -> bool:
        return job_key in self._table.outcome_of or self._dispatcher.is_unsent(job_key)

    @property
    def following(self) -> int:
        """Runs whose live messages this executor follows for nodes in flight."""
        return self._follower.held

    @property
    def in_flight(self) -> int:
        """Nodes submitted and not settled yet (unsent or awaiting their outcome)."""
        return self._dispatcher.unsent + len(self._table)
