"""The batch-system side of a :class:`~aethergraph.cluster.jobqueue.JobQueueCluster`: submitting,
cancelling and listing its jobs with the batch system's own commands (``sbatch`` / ``scancel`` /
``squeue``, ``qsub`` / ``qdel`` / ``qstat``), run with the caller's environment plus the
cluster's ``env=`` (e.g. ``SLURM_CONF``), and a clear error when a command is missing or
rejects a job. A subclass renders the script and reads the commands' output."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from aethergraph.cluster.jobspec import JobSpec
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.watchdog import Watchdog

log = logging.getLogger("aethergraph")

#: states in which a job no longer serves (it may linger in the queue listing a while)
ENDED = frozenset(
    {"COMPLETING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
     "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "EXITING", "FINISHED"}
)  # fmt: skip
_WORKER_NAME = re.compile(r"job-(?P<job>.+)-(?P<index>\d+)@")
_COMMAND_TIMEOUT = 60.0


def job_of(worker: Mapping[str, str]) -> str | None:
    """The batch job a live worker runs in (its ``-n job-<id>-<i>@host`` name), if any."""
    match = _WORKER_NAME.match(worker.get("name", ""))
    return match.group("job") if match else None


class BatchJobs:
    """The jobs of one cluster, as the batch system reports them."""

    kind: ClassVar[str] = "batch"
    submit_command: ClassVar[str] = ""
    cancel_command: ClassVar[str] = ""
    status_command: ClassVar[str] = ""
    submit_flags: ClassVar[tuple[str, ...]] = ()

    spec: JobSpec
    env: dict[str, str]
    log_directory: Path
    _watchdog: Watchdog | None

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}  # job id -> state, in submission order
        self._cancelled: set[str] = set()
        self._listed_at = float("-inf")
        self._lock = threading.RLock()

    # -- what a subclass provides ----------------------------------------------------------
    def render(self, env_file: Path) -> str:
        raise NotImplementedError

    def parse_job_id(self, stdout: str) -> str:
        raise NotImplementedError

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, stdout: str) -> dict[str, str]:
        raise NotImplementedError

    def live_workers(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def script_path(self) -> Path:
        """Where the job script is written (``log_directory/<job_name>.sh``)."""
        return self.log_directory / f"{self.spec.job_name}.sh"

    # -- commands -------------------------------------------------------------------------
    def _command(self, argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        found = shutil.which(argv[0], path=env.get("PATH"))
        if found is None:
            raise ConfigurationError(
                f"{argv[0]} not found on PATH: {type(self).__name__} {what} with {argv[0]}; run "
                f"it on a {self.kind} login node (or load {self.kind}'s module first)"
            )
        try:
            return subprocess.run(
                [found, *argv[1:]], env=env, capture_output=True, text=True,
                timeout=_COMMAND_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RuntimeUsageError(
                f"{argv[0]} did not answer within {_COMMAND_TIMEOUT:g}s ({what})"
            ) from None

    def _submit(self) -> str:
        argv = [
            self.submit_command,
            *self.submit_flags,
            *self.spec.submit_command_extra,
            str(self.script_path),
        ]
        done = self._command(argv, "submits jobs")
        if done.returncode != 0:
            raise ConfigurationError(
                f"{self.submit_command} rejected the job script (exit {done.returncode}):\n"
                f"{done.stderr.strip() or done.stdout.strip()}\n"
                f"the script is {self.script_path} (cluster.job_script() shows it); fix the "
                "parameters it complains about (queue, account, memory, walltime, ...)"
            )
        job_id = self.parse_job_id(done.stdout)
        self._jobs[job_id] = "PENDING"
        if self._watchdog is not None:  # scancel / qdel it should this process be killed
            self._watchdog.command(f"job-{job_id}", [self.cancel_command, job_id], self.env)
        log.info("%s: submitted job %s", type(self).__name__, job_id)
        return job_id

    def _cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        done = self._command([self.cancel_command, *job_ids], "cancels jobs")
        if done.returncode != 0:
            log.warning("%s %s: %s", self.cancel_command, " ".join(job_ids), done.stderr.strip())
        self._cancelled.update(job_ids)

    def _refresh(self, max_age: float = 0.0) -> None:
        """Read the tracked jobs' states from the batch system; forget the ones it dropped."""
        if not self._jobs or time.monotonic() - self._listed_at < max_age:
            return
        done = self._command(self.status_argv(list(self._jobs)), "reads job states")
        listed = self.parse_status(done.stdout)
        if done.returncode != 0 and not listed and done.stderr.strip():
            log.warning("%s: %s", self.status_command, done.stderr.strip())
            if "nvalid job id" not in done.stderr and "nknown Job Id" not in done.stderr:
                return  # the batch system did not answer: keep the last known states
        for job_id in list(self._jobs):
            if job_id in listed:
                self._jobs[job_id] = listed[job_id]
            else:  # gone from the queue: ended
                del self._jobs[job_id]
                self._cancelled.discard(job_id)
                if self._watchdog is not None:
                    self._watchdog.uncommand(f"job-{job_id}")
        self._listed_at = time.monotonic()

    def _active(self) -> list[str]:
        return [j for j, s in self._jobs.items() if s not in ENDED and j not in self._cancelled]

    @property
    def active_jobs(self) -> list[str]:
        """Ids of this cluster's jobs that are queued or running (not ending, not cancelled),
        oldest first: what ``scale()`` counts."""
        with self._lock:
            self._refresh()
            return self._active()

    @property
    def jobs(self) -> dict[str, str]:
        """This cluster's jobs still known to the batch system: id -> state (``PENDING``,
        ``RUNNING``, ...; PBS's one-letter states are named the same way)."""
        with self._lock:
            self._refresh()
            return dict(self._jobs)

    def _surplus(self, active: list[str], count: int) -> list[str]:
        """Which jobs to cancel: waiting ones first, then those whose workers hold nothing,
        newest first."""
        busy: set[str] = set()
        for worker in self.live_workers():
            if worker.get("held", "[]") not in ("[]", ""):
                busy.add(job_of(worker) or "")

        def rank(job_id: str) -> tuple[int, int]:
            waiting = self._jobs.get(job_id) not in ("RUNNING",)
            return (0 if waiting else 1 if job_id not in busy else 2, -active.index(job_id))

        return sorted(active, key=rank)[:count]

    def _await_end(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while self._jobs and time.monotonic() < deadline:
            pause.wait(0.25)
            self._refresh()
            if all(state in ENDED for state in self._jobs.values()):
                break
        if any(state not in ENDED for state in self._jobs.values()):
            log.warning("%s: jobs still ending after %gs: %s", self.kind, timeout, self._jobs)
        else:
            self._jobs.clear()
