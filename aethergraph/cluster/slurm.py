"""``SlurmCluster``: AetherGraph worker pools as Slurm jobs, sized from Python (docs/hpc.md).

One job = one node's share: ``--ntasks=processes`` tasks of ``--cpus-per-task=cores/processes``
CPUs, each an ``aethergraph worker`` started by ``srun``. ``--signal=TERM@<grace + 30>`` (without
``B:``, so every task gets it, not only the batch shell) stops the workers before the walltime:
each gives its running nodes ``grace`` seconds, hands the rest back and exits.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aethergraph.cluster.jobqueue import JobQueueCluster
from aethergraph.errors import ConfigurationError, RuntimeUsageError

#: each task's own shell adds the worker's name, from the task's own SLURM_* values
_TASK = 'exec "$@" -n "job-${SLURM_JOB_ID}-${SLURM_PROCID}@$(hostname)"'


def _directive(prefix: str, line: str) -> str:
    return line if line.startswith(prefix) else f"{prefix} {line}"


def script_body(comment: str, prologue: Sequence[str], env_file: Path) -> list[str]:
    """The lines after the header both batch systems share: what the job is, the prologue
    (``module load``, ``source venv/bin/activate``), then the broker's env file."""
    return [
        "",
        f"# {comment}",
        *(["", *prologue] if prologue else []),
        "",
        "# The broker URL (with its password) and namespace: from a file only you can read.",
        "# shellcheck source=/dev/null",
        f". {shlex.quote(str(env_file))} || exit 1",
        "unset AETHERGRAPH_RESULT_BACKEND",
    ]


class SlurmCluster(JobQueueCluster):
    """Worker pools as Slurm jobs (``sbatch``, ``scancel``, ``squeue``).

    ``queue`` is the partition (``partition=`` is accepted as its alias); the other parameters
    are :class:`~aethergraph.cluster.jobqueue.JobQueueCluster`'s, named as dask-jobqueue's.
    """

    kind = "Slurm"
    submit_command = "sbatch"
    cancel_command = "scancel"
    status_command = "squeue"
    submit_flags = ("--parsable",)

    def __init__(self, *, partition: str | None = None, **kwargs: Any) -> None:
        if partition is not None:
            if kwargs.get("queue") not in (None, partition):
                raise ConfigurationError(
                    f"queue={kwargs['queue']!r} and partition={partition!r}: they are the same "
                    "setting (the Slurm partition); give one"
                )
            kwargs["queue"] = partition
        super().__init__(**kwargs)

    def render(self, env_file: Path) -> str:
        spec = self.spec
        header = [
            f"--job-name={spec.job_name}",
            *([f"--partition={spec.queue}"] if spec.queue else []),
            *([f"--account={spec.account}"] if spec.account else []),
            "--nodes=1",
            f"--ntasks={spec.processes}",
            f"--cpus-per-task={spec.slots}",
            *([f"--mem={spec.memory_mib}M"] if spec.memory_mib else []),
            f"--time={spec.walltime}",
            f"--signal=TERM@{spec.stop_lead}",
            f"--output={self.log_directory / 'aethergraph-%j.out'}",
        ]
        lines = [
            "#!/usr/bin/env bash",
            "# shellcheck disable=SC1090,SC1091  # the prologue may source files of yours",
            *(f"#SBATCH {option}" for option in header),
            *(_directive("#SBATCH", line) for line in spec.job_extra_directives),
            *script_body(
                f"AetherGraph workers: {spec.processes} process(es) x {spec.slots} slot(s), "
                f"namespace {self.namespace}.",
                spec.job_script_prologue,
                env_file,
            ),
            "",
            f"# SIGTERM reaches every task {spec.stop_lead} s before the walltime; each worker "
            f"then gives its",
            f"# running nodes {spec.grace:g} s and hands the rest back (docs/reliability.md).",
            "# shellcheck disable=SC2016  # expanded by each task's own shell",
            f"srun --kill-on-bad-exit=0 --ntasks={spec.processes} --cpus-per-task={spec.slots} \\",
            f"  bash -c {shlex.quote(_TASK)} aethergraph-worker \\",
            f"  {shlex.join(spec.worker_command())}",
        ]
        return "\n".join(lines) + "\n"

    def parse_job_id(self, stdout: str) -> str:
        """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
        job_id = stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeUsageError(f"sbatch answered {stdout.strip()!r}, not a job id")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        # by name, not -j: squeue -j fails outright for a job it already forgot
        return ["squeue", "--noheader", f"--name={self.spec.job_name}", "--format=%i %T"]

    def parse_status(self, stdout: str) -> dict[str, str]:
        states = {}
        for line in stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states
