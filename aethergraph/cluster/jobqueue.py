"""``JobQueueCluster``: worker pools as batch jobs — what ``SlurmCluster`` and ``PBSCluster`` share.

Started from a notebook or script on a login node, as dask-jobqueue's ``SLURMCluster`` is::

    with SlurmCluster(jobs=2, cores=8, memory="16GB", walltime="02:00:00", queue="compute",
                      tools=["mypkg.tools"]) as cluster:
        print(cluster.job_script())        # what is submitted
        cluster.adapt(minimum=0, maximum=10)
        print(cluster.run(my_graph, x=1))  # or run(my_graph, executor=cluster, x=1)

Each job runs ``processes`` ``aethergraph worker`` processes of ``cores / processes`` pool slots,
on the cluster's Redis and namespace (:mod:`.broker`: a private password-protected Redis on the
login node unless one is given). ``scale(n)`` submits or cancels jobs to have ``n``;
``adapt()`` sizes them by demand (:mod:`.adaptive`). Leaving the ``with`` block, ``close()``
and interpreter exit cancel every job the cluster submitted and stop its private Redis; so does
the owner's death (a watchdog process runs the cancel command when a killed kernel cannot).

A subclass says how to talk to its batch system: the script (``render``), the submit, cancel
and status commands and how to read their output.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from aethergraph.cluster.adaptive import Adaptive
from aethergraph.cluster.batchjobs import BatchJobs, job_of
from aethergraph.cluster.broker import ClusterBroker, private_directory, write_env_file
from aethergraph.cluster.jobspec import JobSpec, job_spec
from aethergraph.cluster.load import close_executor_quietly, job_log_tail, slots_wanted
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.celery.discovery import read_workers_sync
from aethergraph.keys import DEFAULT_QUEUE, Keys, check_namespace
from aethergraph.runner import run
from aethergraph.settings import get_settings, redact_url
from aethergraph.tracing.graph_fn import GraphFunction
from aethergraph.watchdog import Watchdog

log = logging.getLogger("aethergraph")

_STATUS_EVERY = 2.0  # seconds a job listing is trusted while waiting (batch systems are shared)


class JobQueueCluster(BatchJobs):
    """Worker pools as batch jobs; see :class:`~aethergraph.cluster.SlurmCluster`."""

    def __init__(
        self,
        *,
        jobs: int = 0,
        cores: int = 1,
        memory: str | None = None,
        walltime: str = "01:00:00",
        queue: str | None = None,
        account: str | None = None,
        processes: int = 1,
        tools: Sequence[str] | str | None = None,
        services: str | None = None,
        queues: Sequence[str] | str = (DEFAULT_QUEUE,),
        pool: str = "prefork",
        python: str | None = None,
        job_name: str | None = None,
        job_extra_directives: Sequence[str] = (),
        job_script_prologue: Sequence[str] = (),
        worker_extra_args: Sequence[str] = (),
        log_directory: str | os.PathLike[str] | None = None,
        redis_url: str | None = None,
        host: str | None = None,
        interface: str | None = None,
        namespace: str | None = None,
        grace: float = 25.0,
        submit_command_extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        worker_wait: float = 3600.0,
    ) -> None:
        super().__init__()
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 0:
            raise ConfigurationError(f"jobs must be an int >= 0 (jobs to start), got {jobs!r}")
        if isinstance(worker_wait, bool) or not isinstance(worker_wait, int | float):
            raise ConfigurationError(f"worker_wait must be seconds, got {worker_wait!r}")
        self.namespace = check_namespace(namespace or f"agc{uuid.uuid4().hex[:8]}")
        self.keys = Keys(self.namespace)
        self.spec: JobSpec = job_spec(
            cores=cores, processes=processes, memory=memory, walltime=walltime, queue=queue,
            account=account, job_name=job_name or f"aethergraph-{self.namespace}",
            job_extra_directives=job_extra_directives, job_script_prologue=job_script_prologue,
            tools=tools, services=services, queues=queues, pool=pool, python=python,
            worker_extra_args=worker_extra_args, grace=grace,
            submit_command_extra=submit_command_extra,
        )  # fmt: skip
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.log_directory = Path(
            log_directory or Path.home() / ".aethergraph" / "jobs" / self.namespace
        ).absolute()
        self._private = self.log_directory / f".{self.namespace}"  # mode 0700: the env file
        self.broker = ClusterBroker(redis_url, host=host, interface=interface, startup_timeout=30)
        self.initial_jobs = jobs
        self.worker_wait = float(worker_wait)
        self._adaptive: Adaptive | None = None
        self._watchdog: Watchdog | None = None
        self._executor: CeleryExecutor | None = None
        self._started = False

    # -- scripts and commands ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """The broker URL (the private Redis's once started); redact it before showing it."""
        return self.broker.url

    @property
    def env_file(self) -> Path:
        return self._private / "broker.env"

    def job_script(self) -> str:
        """The batch script every job of this cluster runs (no secret in it)."""
        return self.render(self.env_file)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> JobQueueCluster:
        """Start the broker (unless given), write the script, submit the initial ``jobs``."""
        with self._lock:
            if self._started:
                return self
            atexit.register(self.close)
            self._watchdog = Watchdog()
            try:
                url = self.broker.start()
                self.log_directory.mkdir(parents=True, exist_ok=True)
                private_directory(self._private)
                self._watchdog.remove(self._private)  # the env file goes if we are killed
                environment = {
                    "AETHERGRAPH_BROKER_URL": url,
                    "AETHERGRAPH_NAMESPACE": self.namespace,
                    "AETHERGRAPH_EXECUTOR": get_settings().effective_executor,
                }
                write_env_file(self.env_file, environment)
                self.script_path.write_text(self.job_script())
                self._started = True
                self._scale(self.initial_jobs)
            except BaseException:
                self.close()
                raise
            return self

    def _scale(self, n: int) -> None:
        with self._lock:
            self._refresh()
            active = self._active()
            for _ in range(n - len(active)):
                self._submit()
            if len(active) > n:
                self._cancel(self._surplus(active, len(active) - n))

    def scale(self, n: int) -> None:
        """Submit or cancel jobs until ``n`` are queued or running (stops ``adapt``)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigurationError(f"scale(n) needs an int >= 0, got {n!r}")
        self._stop_adaptive()
        self.start()
        self._scale(n)

    def adapt(
        self, minimum: int = 0, maximum: int = 10, *, interval: float = 2.0, cooldown: float = 60.0
    ) -> Adaptive:
        """Size the cluster by demand between ``minimum`` and ``maximum`` jobs (a background
        thread; see :mod:`aethergraph.cluster.adaptive`); ``scale()`` or ``close()`` end it."""
        self._stop_adaptive()
        adaptive = Adaptive(
            demand=self.demand, active=lambda: len(self._active()), scale=self._scale,
            slots_per_job=self.spec.cores, minimum=minimum, maximum=maximum,
            interval=interval, cooldown=cooldown,
        )  # fmt: skip
        self.start()
        self._adaptive = adaptive.start()
        return adaptive

    def _stop_adaptive(self) -> None:
        adaptive, self._adaptive = self._adaptive, None
        if adaptive is not None:
            adaptive.stop()

    def demand(self) -> int:
        """Pool slots wanted now (see :mod:`aethergraph.cluster.adaptive`)."""
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            return slots_wanted(client, self.keys, self.spec.queues)
        finally:
            client.close()

    def live_workers(self) -> list[dict[str, Any]]:
        """The heartbeating workers of this cluster's namespace, each with its ``job`` id."""
        if not self.url:
            return []
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            return [{**w, "job": job_of(w)} for w in read_workers_sync(client, self.keys)]
        finally:
            client.close()

    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        """Block until at least ``n`` workers heartbeat (``timeout`` seconds, or no limit: a
        batch queue may keep jobs waiting). Fails at once when no job is left to bring them."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = threading.Event()
        while (live := len(self.live_workers())) < n:
            with self._lock:
                self._refresh(max_age=_STATUS_EVERY)
                active = self._active()
            if not active:
                raise RuntimeUsageError(
                    f"{type(self).__name__}: {live} of {n} workers are up and no job of this "
                    f"cluster is queued or running (scale(n) submits some);\n"
                    f"{job_log_tail(self.log_directory)}"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeUsageError(
                    f"{type(self).__name__}: {live} of {n} workers came up within {timeout:g}s; "
                    f"jobs: {self.jobs};\n{job_log_tail(self.log_directory)}"
                )
            pause.wait(0.25)

    @property
    def executor(self) -> CeleryExecutor:
        """A Celery executor on this cluster's Redis and namespace (start the cluster first)."""
        if self._executor is None:
            if not self._started:
                raise RuntimeUsageError(
                    f"{type(self).__name__} is not started: use it as 'with ... as cluster:' "
                    "or call cluster.start() first"
                )
            settings = get_settings().model_copy(
                update={"broker_url": self.url, "namespace": self.namespace,
                        "result_backend": None, "worker_wait": self.worker_wait}
            )  # fmt: skip
            self._executor = CeleryExecutor(settings=settings)
        return self._executor

    def __aethergraph_executor__(self) -> CeleryExecutor:
        """``run(gf, executor=cluster)``: this cluster's executor, starting it if need be."""
        self.start()
        return self.executor

    def run(self, gf: GraphFunction, /, **kwargs: Any) -> dict[str, Any]:
        """``aethergraph.run`` on this cluster (nodes wait up to ``worker_wait`` for workers)."""
        self.start()
        if self._adaptive is None and not self._active() and not self.live_workers():
            raise RuntimeUsageError(
                f"{type(self).__name__} has no job to run {gf.name!r} on: call "
                "cluster.scale(n) or cluster.adapt(...) first (or pass jobs=n)"
            )
        return run(gf, executor=self.executor, **kwargs)

    def close(self, timeout: float | None = None) -> None:
        """Cancel every job of the cluster and wait (``timeout``: grace + 15 s) for them to
        leave the queue; then stop the private Redis and remove the env file (idempotent)."""
        self._stop_adaptive()
        close_executor_quietly(self._executor)
        self._executor = None
        with self._lock:
            if self._jobs:
                try:
                    self._cancel(list(self._jobs))
                    self._await_end(self.spec.grace + 15 if timeout is None else timeout)
                except (ConfigurationError, RuntimeUsageError) as exc:
                    log.warning("%s: cancelling its jobs failed: %s", type(self).__name__, exc)
            self.broker.stop()
            shutil.rmtree(self._private, ignore_errors=True)
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None and not self._jobs:
                watchdog.dismiss()  # else it stays: it cancels them should we be killed
            self._started = False
        atexit.unregister(self.close)

    def __enter__(self) -> JobQueueCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        jobs = ", ".join(f"{j}:{s}" for j, s in self._jobs.items()) or "none"
        return (
            f"<{type(self).__name__} {redact_url(self.url) or 'not started'} "
            f"namespace={self.namespace} cores={self.spec.cores} "
            f"processes={self.spec.processes} jobs=[{jobs}]>"
        )
