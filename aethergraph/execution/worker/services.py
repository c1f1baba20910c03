"""A worker process's own services: the shared built-ins, the ``--services`` hook, log forwarding.

One registry per worker *process*, by design: a tool's ``context.kv()`` / ``memory()`` /
``artifacts()`` / ``channel()`` must reach the same Redis-backed stores as the client and the
other workers, and a custom service (a model, a database pool) is built once per process and
reused by every node it runs. :class:`WorkerServices` configures that registry explicitly and
once per process: the built-ins when it is first built, the bootstrap once; a rebuild after a
close only starts the services again. Nothing else in the worker reaches for the process-wide
registry: outcome offload and argument materialization use :attr:`WorkerServices.builtins`.

Log forwarding: node log records (``context.logger()``) are published on the run's channel so
that the submitting client sees them live. Exactly one forwarding handler is installed while the
services are up — a rebuild must not add a second (each record would reach the client twice).
Publishing happens on the runtime loop; each publish task is kept until it is done and a failure
is logged, never silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aethergraph import runtime_loop
from aethergraph.keys import Keys
from aethergraph.services.builtins.channel import ChannelBackend, ChannelMessage
from aethergraph.services.node_logger import LOGGER_NAME
from aethergraph.services.runtime.registry import (
    BuiltinBackends,
    ServiceRegistry,
    current_services,
)
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph.worker")


class RunLogHandler(logging.Handler):
    """Forwards node log records (those carrying a ``run_id``) to the run's channel."""

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
            self.handleError(record)


class WorkerServices:
    """Builds, starts and closes the service registry of this worker process."""

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        *,
        bootstrap: Callable[[], Any] | None = None,
        log_level: str = "INFO",
        registry: ServiceRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.bootstrap = bootstrap
        self.log_level = log_level.upper()
        #: the registry this process's tools see (a test may pass a private one)
        self.registry = registry if registry is not None else current_services()
        self.ready = False
        self._builtins: BuiltinBackends | None = None
        self._bootstrapped = False
        self._handler: RunLogHandler | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    @property
    def builtins(self) -> BuiltinBackends:
        """The worker's built-ins (Redis-backed), configured on first use."""
        if self._builtins is None:
            self._builtins = self._configure_builtins()
        return self._builtins

    def _configure_builtins(self) -> BuiltinBackends:
        from aethergraph.services.builtins.redis_backends import (
            RedisArtifactStore,
            RedisKV,
            RedisMemoryBackend,
        )
        from aethergraph.services.builtins.redis_channel import RedisChannelBackend

        url = self.settings.broker_url or ""
        kwargs: dict[str, Any] = {
            "channel": RedisChannelBackend(url, self.keys),
            "memory": RedisMemoryBackend(url, self.keys),
            "kv": RedisKV(url, self.keys),
        }
        if self.settings.artifacts_backend != "filesystem":
            kwargs["artifacts"] = RedisArtifactStore(url, self.keys)
        return self.registry.configure_builtins(**kwargs)

    def ensure(self) -> None:
        if not self.ready:
            self.build()

    def build(self) -> None:
        """Configure (first time only) and start this process's services."""
        builtins = self.builtins
        self._forward_logs(builtins.channel)
        if self.bootstrap is not None and not self._bootstrapped:
            self._bootstrapped = True
            registered = self.bootstrap()
            if isinstance(registered, dict):
                for name, instance in registered.items():
                    self.registry.register(name, instance)
        runtime_loop.run_sync(self.registry.start_all())
        self.registry.serving = True
        self.ready = True

    def close(self) -> None:
        """Close the services (a later :meth:`build` starts them again)."""
        if not self.ready:
            return
        self.ready = False
        self.registry.serving = False
        self._stop_forwarding()
        try:
            runtime_loop.run_sync(self._close(), timeout=30)
        except Exception:
            log.exception("closing services failed")

    async def _close(self) -> None:
        if self._publishing:  # let forwarded logs already on their way arrive
            await asyncio.wait(set(self._publishing), timeout=5)
        await self.registry.close_all()

    # -- log forwarding ----------------------------------------------------------------
    def _forward_logs(self, channel: ChannelBackend) -> None:
        node_log = logging.getLogger(LOGGER_NAME)
        if self._handler is None:
            self._handler = RunLogHandler(lambda message: self._publish(channel, message))
            node_log.addHandler(self._handler)
        if node_log.level == logging.NOTSET:
            # tools' INFO logs reach the client whatever the worker's own -l level is
            level = logging.getLevelName(self.log_level)
            node_log.setLevel(min(logging.INFO, level if isinstance(level, int) else logging.INFO))

    def _stop_forwarding(self) -> None:
        if self._handler is not None:
            logging.getLogger(LOGGER_NAME).removeHandler(self._handler)
            self._handler = None

    def _publish(self, channel: ChannelBackend, message: ChannelMessage) -> None:
        """Called from any thread: publish on the runtime loop, keeping the task."""
        runtime_loop.call_soon(self._start_publish, channel, message)

    def _start_publish(self, channel: ChannelBackend, message: ChannelMessage) -> None:
        task = asyncio.get_running_loop().create_task(_publish(channel, message))
        self._publishing.add(task)
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        self._publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not forward a node log record", exc_info=task.exception())


async def _publish(channel: ChannelBackend, message: ChannelMessage) -> None:
    await channel.publish(message)
