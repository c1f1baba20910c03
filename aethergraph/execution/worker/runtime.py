"""``WorkerRuntime``: one ``aethergraph worker`` process, assembled from its parts.

It owns what is per worker — its id, its services, its outcome pusher, its node runner, its
heartbeat — registers the tool tasks (``tasks.py``) and connects its life to Celery's signals
(``signals.py``). A message goes: task → :meth:`WorkerRuntime.execute` → decode arguments
(``outcomes.py``) → run the node or the pack (``running.py``) → push the outcomes.

Worker-side continuation (a worker dispatching a finished node's ready dependents itself) would
hook in here, after the outcome push, with the pusher's Redis connection; nothing in the parts
assumes that only the client publishes.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.exceptions import WorkerLostError

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError, ToolCodeError
from aethergraph.execution.base import failure_from
from aethergraph.execution.wire import META
from aethergraph.execution.worker import bad_messages, reporting
from aethergraph.execution.worker.heartbeat import Heartbeat
from aethergraph.execution.worker.leases import Leases
from aethergraph.execution.worker.metrics import WorkerMetrics
from aethergraph.execution.worker.outcomes import Finished, OutcomePusher, failed_now, failure_for
from aethergraph.execution.worker.running import NodeRunner
from aethergraph.execution.worker.services import WorkerServices
from aethergraph.execution.worker.shipped import ToolCode
from aethergraph.execution.worker.signals import connect_signals
from aethergraph.execution.worker.started import StartedNotices
from aethergraph.execution.worker.stopping import GracefulStop
from aethergraph.execution.worker.tasks import register_tool_tasks, unknown_task_outcomes
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.keys import Keys
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph.worker")


class WorkerRuntime:
    """Tool tasks, per-process services, outcomes and heartbeat of one ``aethergraph worker``.

    ``async_concurrency``: how many async nodes of one message (a pack) may run at once; the
    default (``None``) is the ``AETHERGRAPH_ASYNC_CONCURRENCY`` setting, 1 unless set: a worker
    never runs more nodes at once than its slots unless asked to. ``grace``: seconds running
    nodes get to finish after SIGTERM (default: ``AETHERGRAPH_STOP_GRACE``; ``stopping.py``).
    ``name``: the Celery node name (``-n``), shown by ``aethergraph status`` beside Flower's.
    ``metrics_port``: serve Prometheus metrics there (``metrics.py``); default: off.
    """

    def __init__(
        self,
        app: Celery,
        settings: Settings,
        *,
        tools: dict[str, ToolSpec],
        bootstrap: Callable[[], Any] | None,
        queues: Sequence[str],
        pool: str,
        concurrency: int,
        log_level: str = "INFO",
        async_concurrency: int | None = None,
        grace: float | None = None,
        name: str = "",
        metrics_port: int | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.tools = tools
        self.queues = list(queues)
        self.pool = pool
        self.concurrency = concurrency
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.services = WorkerServices(
            settings, self.keys, bootstrap=bootstrap, log_level=log_level
        )
        self.pusher = OutcomePusher(settings, self.keys, lambda: self.services.builtins.artifacts)
        self.leases = Leases(self.keys, self.pusher.redis)
        #: shipped notebook tools, and the check for tools edited since this worker started
        self.code = ToolCode(self.keys, self.pusher.redis, mismatch=settings.source_mismatch)
        if async_concurrency is None:
            async_concurrency = settings.async_concurrency
        if async_concurrency < 1:
            raise ConfigurationError(
                f"--async-concurrency must be an integer >= 1, got {async_concurrency}"
            )
        self.runner = NodeRunner(
            self.pusher.decode_args, async_concurrency, StartedNotices(self.pusher.push_started)
        )
        grace = settings.stop_grace if grace is None else grace
        if grace < 0:
            raise ConfigurationError(f"--grace must be a number of seconds >= 0, got {grace}")
        self.stop = GracefulStop(grace, prefork=pool == "prefork", hand_back=self._hand_back)
        #: Prometheus metrics (``metrics.py``), made before the pool forks; None: off
        self.metrics = WorkerMetrics(metrics_port) if metrics_port else None
        self.name = name
        self.heartbeat = Heartbeat(
            settings.broker_url or "",
            self.keys,
            self.worker_id,
            tools=list(tools),
            queues=self.queues,
            pool=pool,
            concurrency=concurrency,
            name=name,
        )
        if pool == "prefork":
            # Importing the tools may have started the runtime loop (a script's module-level
            # run(...)); its thread would not survive the fork into the pool. Stop it and what
            # runs on it now: each pool process starts its own loop.
            runtime_loop.shutdown()
        scheme = urlsplit(settings.broker_url or "").scheme
        if scheme in ("redis", "rediss", "sentinel"):
            # a message the worker cannot decode is dead-lettered, never fatal
            app.conf.broker_transport = (
                bad_messages.SENTINEL_TRANSPORT if scheme == "sentinel" else bad_messages.TRANSPORT
            )
            app.conf.broker_transport_options = {
                **(app.conf.broker_transport_options or {}),
                bad_messages.OPTION: self.keys.dead_letters(),
            }
        register_tool_tasks(app, tools.values(), self.execute)
        connect_signals(self, prefork=pool == "prefork")

    # -- messages ----------------------------------------------------------------------
    def execute(self, task_id: str, spec: ToolSpec, kwargs: dict[str, Any]) -> Any:
        """Run one message (a node, or a pack of nodes) and push its outcomes.

        Returns the task's result, or raises its failure (``reporting.py``): what Celery,
        Flower and the worker log are told about the message once the client has its outcomes.
        """
        meta = kwargs.pop(META, None)
        if not isinstance(meta, dict) or "client" not in meta:
            raise ConfigurationError(f"task {spec.name} received without AetherGraph metadata")
        self.services.ensure()
        if self.pool == "prefork":
            self.stop.protect_pool_process()
        client = str(meta["client"])
        if not self.leases.wanted(meta):
            log.warning(
                "skipping message %s (%s): its client %s is gone", task_id, spec.name, client
            )
            self.pusher.record_not_run(meta, meta.get("pack") or [meta])
            return f"skipped: client {client} is gone"
        try:
            spec = self.code.resolve(spec, meta)
        except ToolCodeError as exc:  # every node of the message fails, saying why
            failed = failed_now(failure_from(exc, retryable=False))
            nodes = meta.get("pack") or [{**meta, "id": task_id}]
            finished = [Finished(str(node["id"]), node, failed) for node in nodes]
            self.pusher.push(client, finished, int(meta.get("rec") or 0))
            return reporting.report(spec.name, finished)
        done: list[Finished] = []
        metrics = self.metrics
        nodes = len(meta["pack"]) if "pack" in meta else 1
        if metrics is not None:
            metrics.began(spec.name, nodes)

        record = int(meta.get("rec") or 0)

        def push(finished: Sequence[Finished]) -> None:
            self.pusher.push(client, finished, record)
            done.extend(finished)
            if metrics is not None:
                for f in finished:
                    failure = f.outcome.failure
                    retried = failure is not None and reporting.will_retry(f.meta, failure)
                    metrics.finished(spec.name, f.outcome, sent=meta.get("sent"), retried=retried)

        try:
            return self._execute(task_id, spec, meta, kwargs, push, done)
        finally:
            if metrics is not None:
                metrics.not_run(spec.name, nodes - len(done))

    def _execute(
        self,
        task_id: str,
        spec: ToolSpec,
        meta: dict[str, Any],
        kwargs: dict[str, Any],
        push: Callable[[Sequence[Finished]], None],
        done: list[Finished],
    ) -> Any:
        client = str(meta["client"])
        if "pack" in meta:
            wanted = lambda: self.leases.wanted(meta)  # noqa: E731
            if self.runner.run_pack(spec, meta["pack"], push, go_on=wanted, client=client):
                reporting.revoked(spec.name, task_id)
            elif len(done) < len(meta["pack"]):  # its client left: what did not run, say so
                ran = {f.task_id for f in done}
                rest = [node for node in meta["pack"] if str(node.get("id")) not in ran]
                self.pusher.record_not_run(meta, rest)
            return reporting.report(spec.name, done)
        try:
            args = self.pusher.decode_args(kwargs, spec)
        except Exception as exc:
            push([Finished(task_id, meta, failed_now(failure_for(exc)))])
            return reporting.report(spec.name, done)
        if meta.get("timeout"):  # the client's backstop clock starts now, not at publish
            self.pusher.push_started(client, task_id)
        push([Finished(task_id, meta, self.runner.run_one(spec, meta, args, task_id))])
        return reporting.report(spec.name, done)

    # -- lifecycle (called through signals.py) -----------------------------------------
    def on_ready(self) -> None:
        self.heartbeat.start()
        if self.metrics is not None:
            self.metrics.serve(
                worker=self.name or self.worker_id,
                pool=self.pool,
                concurrency=self.concurrency,
                queues=self.queues,
            )

    def on_shutdown(self) -> None:
        self.heartbeat.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.pool != "prefork":
            self.services.close()

    def on_stopping(self) -> None:
        self.stop.begin()

    def on_process_init(self) -> None:
        self.services.build()

    def on_process_shutdown(self) -> None:
        self.services.close()
        if self.metrics is not None:
            self.metrics.process_exited(os.getpid())

    def on_task_failure(self, task_id: str, exception: BaseException, kwargs: Any) -> None:
        """A pool process died running a message: hand its nodes back to their client.

        Celery acknowledges the message (``reject_on_worker_lost`` is off): the client, which
        counts the death against the running node, is the one to send it again. Celery calls
        this in the main process, for tool exceptions too — those are outcomes already.
        """
        if not isinstance(exception, WorkerLostError) or task_id in self.stop.handed_back:
            return
        try:
            self._push_handback(task_id, kwargs, killed=True, reason=str(exception))
        except Exception:  # the client's lost-message check sends the nodes again
            log.exception("could not hand message %s back to its client", task_id)

    def _hand_back(self, task_id: str, kwargs: Any) -> None:
        """The graceful stop gives up on a message: its client sends it again (no death)."""
        reason = f"the worker is stopping (SIGTERM) and its {self.stop.grace:g}s grace ran out"
        self._push_handback(task_id, kwargs, killed=False, reason=reason)

    def _push_handback(self, task_id: str, kwargs: Any, *, killed: bool, reason: str) -> None:
        meta = kwargs.get(META) if isinstance(kwargs, dict) else None
        if not isinstance(meta, dict) or "client" not in meta:
            return  # not one of ours
        nodes = meta.get("pack") or [{**meta, "id": task_id}]
        self.pusher.push_handback(
            str(meta["client"]),
            [str(node.get("id")) for node in nodes if isinstance(node, dict)],
            worker=self.worker_id,
            killed=killed,
            reason=reason,
            release=task_id,
        )

    def on_unknown_task(self, message: Any, name: str, task_id: str) -> None:
        """A task this worker does not serve: fail its nodes at the client, never lose them."""
        try:
            found = unknown_task_outcomes(
                message, name, task_id, worker_id=self.worker_id, served=self.tools
            )
            if found is not None:
                self.pusher.push(*found)
        except Exception:
            log.exception("could not report unknown task %s", name)
