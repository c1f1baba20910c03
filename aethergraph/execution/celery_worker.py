"""The worker runtime: what ``aethergraph worker`` runs inside ``celery worker``.

* **Allowlist.** The worker imports the ``--tools`` modules and registers one Celery task per tool
  found in this process's registry, named after the tool. Nothing else is registered, and the
  JSON-only configuration means a message can never make a worker import or run anything else.
* **Its own services.** Every worker *process* builds its own service registry once — the shared
  Redis-backed built-ins plus whatever the ``--services MODULE:FUNC`` bootstrap registers — and
  calls ``start()`` on them; ``close()`` runs at shutdown. Prefork children do this in
  ``worker_process_init`` (a runtime thread does not survive ``fork``), thread and solo pools in
  ``worker_init``.
* **Outcomes pushed.** Each finished attempt is pushed to the submitting client's result list.
* **Heartbeat.** The worker publishes which tools and queues it serves under a key with a short
  TTL, so clients can fail a node fast when no live worker serves its tool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery, signals
from celery.exceptions import SoftTimeLimitExceeded

from aethergraph import codec, runtime_loop
from aethergraph.errors import ConfigurationError, NodeTimeoutError, qualified_name
from aethergraph.execution.base import NodeFailure, NodeJob, NodeOutcome, failure_from
from aethergraph.execution.invoke import invoke_async, invoke_sync
from aethergraph.execution.wire import META, outcome_message
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.keys import Keys
from aethergraph.registry import current_registry
from aethergraph.services.builtins.channel import ChannelMessage
from aethergraph.services.node_logger import LOGGER_NAME
from aethergraph.services.runtime.registry import current_services
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph.worker")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 6.0
PACK_FLUSH = 0.02  # seconds between outcome pushes while a pack runs


def load_tools(modules: Sequence[str]) -> dict[str, ToolSpec]:
    """Import the tool modules; return every tool registered in this process, by name."""
    for name in modules:
        try:
            if name.endswith(".py"):
                _import_file(name)
            else:
                importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"--tools {name}: cannot import it ({exc}); pass an importable module path "
                "(e.g. mypkg.tools) and run the worker where that package is installed"
            ) from exc
    tools: dict[str, ToolSpec] = {}
    for entry in current_registry().list("tool"):
        tools[entry.name] = entry.obj.spec  # list() is version-sorted: the latest wins
    return tools


def _import_file(path: str) -> None:
    """Import a ``.py`` file as a module named after it (its ``__main__`` block does not run)."""
    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise ImportError(f"no such file: {path}")
    module_name = os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def load_bootstrap(spec: str | None) -> Callable[[], Any] | None:
    """``MODULE:FUNC`` → the services bootstrap function."""
    if not spec:
        return None
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigurationError(f"--services expects MODULE:FUNC, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"--services {spec}: cannot import {module_name!r} ({exc}); run the worker where "
            "that module is importable"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigurationError(f"--services {spec}: {func_name!r} is not a function")
    return func  # type: ignore[no-any-return]


class _RunLogHandler(logging.Handler):
    """Forwards node log records to the submitting client through the run's channel."""

    def __init__(self, publish: Callable[[ChannelMessage], None]) -> None:
        super().__init__()
        self._publish = publish

    def emit(self, record: logging.LogRecord) -> None:
        run_id = getattr(record, "run_id", None)
        if not run_id:
            return
        try:
            message = ChannelMessage(
                run_id=run_id,
                graph_id=str(getattr(record, "graph_id", "")),
                node_id=str(getattr(record, "node_id", "")),
                kind="log",
                payload={"level": record.levelno, "msg": record.getMessage()},
                ts=record.created,
            )
            self._publish(message)
        except Exception:
            pass


class WorkerRuntime:
    """Tool tasks, per-process services and heartbeat of one ``aethergraph worker``."""

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
    ) -> None:
        self.app = app
        self.log_level = log_level.upper()
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.tools = tools
        self.bootstrap = bootstrap
        self.queues = list(queues)
        self.pool = pool
        self.concurrency = concurrency
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._redis: redis.Redis | None = None
        self._services_ready = False
        self._heartbeat_stop = threading.Event()
        for spec in tools.values():
            self._register_task(spec)
        self._connect_signals()

    # -- tasks -------------------------------------------------------------------------
    def _register_task(self, spec: ToolSpec) -> None:
        runtime = self

        def node_task(self: Any, **kwargs: Any) -> None:
            runtime.execute(self.request.id, spec, kwargs)

        node_task.__name__ = spec.name
        node_task.__doc__ = spec.description
        self.app.task(
            name=spec.name,
            bind=True,
            typing=False,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
        )(node_task)

    def execute(self, task_id: str, spec: ToolSpec, kwargs: dict[str, Any]) -> None:
        meta = kwargs.pop(META, None)
        if not isinstance(meta, dict) or "client" not in meta:
            raise ConfigurationError(f"task {spec.name} received without AetherGraph metadata")
        self.ensure_services()
        if "pack" in meta:
            self._execute_pack(spec, str(meta["client"]), meta["pack"])
            return
        try:
            args = self._decode(kwargs)
        except Exception as exc:
            self._push(
                str(meta["client"]), [(task_id, meta, NodeOutcome(failure=failure_from(exc)))]
            )
            return
        if meta.get("timeout"):  # the client's backstop clock starts now, not at publish
            started = json.dumps({"task_id": task_id, "started": True})
            self.redis().rpush(self.keys.client_results(str(meta["client"])), started)
        job = _job(spec, meta, args)
        try:
            outcome = self._run_async(job) if spec.is_async else invoke_sync(job)
        except SoftTimeLimitExceeded:
            # The soft-limit signal reached this process while it waited for an async tool: its
            # timeout, or the client revoking the task (cancellation; the outcome is ignored).
            outcome = NodeOutcome(failure=failure_from(SoftTimeLimitExceeded()))
        if _interrupted(outcome):
            # Celery's soft limit is how a sync tool's timeout fires on prefork: say so
            timeout = NodeTimeoutError(f"tool {spec.name!r} exceeded its timeout of {job.timeout}s")
            outcome = NodeOutcome(failure=failure_from(timeout))
        self._push(str(meta["client"]), [(task_id, meta, outcome)])

    def _execute_pack(self, spec: ToolSpec, client: str, nodes: list[dict[str, Any]]) -> None:
        """Run a pack of nodes of one tool (see ``CeleryExecutor._publish``).

        Sync tools run one after another, async tools concurrently on the runtime loop, as
        separate messages would. Outcomes are pushed in batches, at least every
        ``PACK_FLUSH`` seconds, so dependents of early nodes need not wait for the whole pack.
        A soft-limit signal here can only be the client revoking the pack (packed nodes have no
        timeout): the pack stops.
        """
        done: list[tuple[str, dict[str, Any], NodeOutcome]] = []
        flushed = time.monotonic()
        jobs: list[tuple[dict[str, Any], NodeJob]] = []
        for node in nodes:
            try:
                jobs.append((node, _job(spec, node, self._decode(node.get("args") or {}))))
            except Exception as exc:
                done.append((str(node["id"]), node, NodeOutcome(failure=failure_from(exc))))
        try:
            if spec.is_async:
                outcomes = self._run_async_many([job for _, job in jobs])
                done.extend((str(n["id"]), n, o) for (n, _), o in zip(jobs, outcomes, strict=True))
                return
            for node, job in jobs:
                outcome = invoke_sync(job)
                done.append((str(node["id"]), node, outcome))
                if _interrupted(outcome):
                    return
                if time.monotonic() - flushed >= PACK_FLUSH:
                    self._push(client, done)
                    done, flushed = [], time.monotonic()
        except SoftTimeLimitExceeded:
            return
        finally:
            if done:
                self._push(client, done)

    def _decode(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        args = codec.decode(kwargs)
        if codec.contains_offloaded(args):
            store = current_services().builtins.artifacts
            args = runtime_loop.run_sync(codec.materialize(args, store))
        return dict(args)

    def _run_async(self, job: NodeJob) -> NodeOutcome:
        """Run an async tool on this process's runtime loop.

        If the soft-limit signal interrupts the wait (the tool's timeout, or the client
        revoking the task to cancel it), the coroutine is cancelled so its ``finally`` blocks
        run, and the signal's exception goes on to the caller.
        """
        return self._run_async_many([job])[0]

    def _run_async_many(self, jobs: list[NodeJob]) -> list[NodeOutcome]:
        future = runtime_loop.submit(_gather([invoke_async(job) for job in jobs]))
        try:
            return future.result()
        except SoftTimeLimitExceeded:
            if future.cancel():
                try:
                    future.result(timeout=10)
                except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
                    pass
            raise

    def _push(self, client: str, done: list[tuple[str, dict[str, Any], NodeOutcome]]) -> None:
        """Push finished attempts to the client's result list, in one round trip."""
        messages = [
            self._outcome_message(task_id, meta, outcome) for task_id, meta, outcome in done
        ]
        key = self.keys.client_results(client)
        pipe = self.redis().pipeline(transaction=False)
        pipe.rpush(key, *messages)
        pipe.expire(key, int(self.settings.result_ttl))
        pipe.execute()

    def _outcome_message(self, task_id: str, meta: dict[str, Any], outcome: NodeOutcome) -> str:
        failure = outcome.failure.to_dict() if outcome.failure is not None else None
        outputs = None
        if outcome.outputs is not None:
            try:
                where = f"outputs of node {meta['node_id']!r}"
                outputs = codec.encode(outcome.outputs, where=where)
                threshold = self.settings.offload_threshold
                if codec.needs_offload(outputs, threshold):
                    store = current_services().builtins.artifacts
                    outputs = runtime_loop.run_sync(
                        codec.offload_entries(outputs, store, threshold=threshold)
                    )
            except Exception as exc:
                failure = failure_from(exc).to_dict()
        return outcome_message(task_id=task_id, meta=meta, outputs=outputs, failure=failure)

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.broker_url or "")
        return self._redis

    # -- services ----------------------------------------------------------------------
    def ensure_services(self) -> None:
        if not self._services_ready:
            self.build_services()

    def build_services(self) -> None:
        """Build this process's service registry (shared built-ins + bootstrap) and start it."""
        from aethergraph.services.builtins.redis_backends import (
            RedisArtifactStore,
            RedisKV,
            RedisMemoryBackend,
        )
        from aethergraph.services.builtins.redis_channel import RedisChannelBackend

        url = self.settings.broker_url or ""
        services = current_services()
        channel = RedisChannelBackend(url, self.keys)
        kwargs: dict[str, Any] = {
            "channel": channel,
            "memory": RedisMemoryBackend(url, self.keys),
            "kv": RedisKV(url, self.keys),
        }
        if self.settings.artifacts_backend != "filesystem":
            kwargs["artifacts"] = RedisArtifactStore(url, self.keys)
        services.configure_builtins(**kwargs)

        def publish(message: ChannelMessage) -> None:
            runtime_loop.get_loop().call_soon_threadsafe(_fire_and_forget, channel, message)

        node_log = logging.getLogger(LOGGER_NAME)
        node_log.addHandler(_RunLogHandler(publish))
        if node_log.level == logging.NOTSET:
            # tools' INFO logs reach the client whatever the worker's own -l level is
            node_log.setLevel(min(logging.INFO, logging.getLevelName(self.log_level)))
        if self.bootstrap is not None:
            registered = self.bootstrap()
            if isinstance(registered, dict):
                for name, instance in registered.items():
                    services.register(name, instance)
        runtime_loop.run_sync(services.start_all())
        services.serving = True
        self._services_ready = True

    def close_services(self) -> None:
        if self._services_ready:
            self._services_ready = False
            try:
                runtime_loop.run_sync(current_services().close_all(), timeout=30)
            except Exception:
                log.exception("closing services failed")

    # -- heartbeat ---------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        thread = threading.Thread(target=self._beat, name="aethergraph-heartbeat", daemon=True)
        thread.start()

    def _beat(self) -> None:
        key = self.keys.worker(self.worker_id)
        info: dict[Any, Any] = {
            "tools": json.dumps(sorted(self.tools)),
            "queues": json.dumps(self.queues),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "pool": self.pool,
            "concurrency": str(self.concurrency),
        }
        client = redis.Redis.from_url(self.settings.broker_url or "")
        try:
            while not self._heartbeat_stop.is_set():
                try:
                    pipe = client.pipeline(transaction=False)
                    pipe.hset(key, mapping={**info, "ts": str(time.time())})
                    pipe.pexpire(key, int(HEARTBEAT_TTL * 1000))
                    pipe.execute()
                except redis.RedisError as exc:
                    log.warning("heartbeat failed: %s", exc)
                self._heartbeat_stop.wait(HEARTBEAT_INTERVAL)
            client.delete(key)
        finally:
            client.close()

    def stop_heartbeat(self) -> None:
        self._heartbeat_stop.set()

    # -- Celery signals ----------------------------------------------------------------
    def _connect_signals(self) -> None:
        prefork = self.pool == "prefork"

        def ready(**_: Any) -> None:
            self.start_heartbeat()

        def shutdown(**_: Any) -> None:
            self.stop_heartbeat()
            if not prefork:
                self.close_services()

        def init(**_: Any) -> None:
            self.build_services()

        def child_shutdown(**_: Any) -> None:
            self.close_services()

        def unknown(message: Any = None, name: str = "", id: str = "", **_: Any) -> None:
            self._report_unknown(message, name, id)

        signals.worker_ready.connect(ready, weak=False)
        signals.worker_shutdown.connect(shutdown, weak=False)
        signals.task_unknown.connect(unknown, weak=False)
        if prefork:
            signals.worker_process_init.connect(init, weak=False)
            signals.worker_process_shutdown.connect(child_shutdown, weak=False)
        else:
            signals.worker_init.connect(init, weak=False)

    def _report_unknown(self, message: Any, name: str, task_id: str) -> None:
        """A task this worker does not serve: fail its node at the client instead of losing it."""
        try:
            body = message.decode() if message is not None else None
            kwargs = body[1] if isinstance(body, (list, tuple)) and len(body) > 1 else {}
            meta = kwargs.get(META) if isinstance(kwargs, dict) else None
            if not isinstance(meta, dict) or "client" not in meta:
                return
            failure = NodeFailure(
                qualified_name(ConfigurationError()),
                f"worker {self.worker_id} does not serve tool {name!r} (it serves "
                f"{sorted(self.tools)}); start workers for this queue with "
                f"--tools <module defining {name}>",
            )
            nodes = meta.get("pack") or [{**meta, "id": task_id}]
            outcome = NodeOutcome(failure=failure)
            self._push(str(meta["client"]), [(str(n["id"]), n, outcome) for n in nodes])
        except Exception:
            log.exception("could not report unknown task %s", name)


def _job(spec: ToolSpec, meta: dict[str, Any], args: dict[str, Any]) -> NodeJob:
    return NodeJob(
        str(meta["run_id"]),
        str(meta["graph_id"]),
        str(meta["node_id"]),
        spec,
        args,
        int(meta.get("attempt", 1)),
        meta.get("timeout"),
    )


def _interrupted(outcome: NodeOutcome) -> bool:
    """Did Celery's soft-limit signal end this attempt (a timeout or a revoke)?"""
    failure = outcome.failure
    return failure is not None and failure.exc_type.endswith("SoftTimeLimitExceeded")


async def _gather(coroutines: list[Any]) -> list[NodeOutcome]:
    return list(await asyncio.gather(*coroutines))


async def _publish(channel: Any, message: ChannelMessage) -> None:
    await channel.publish(message)


def _fire_and_forget(channel: Any, message: ChannelMessage) -> None:
    runtime_loop.get_loop().create_task(_publish(channel, message))
