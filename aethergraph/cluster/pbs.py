"""``PBSCluster``: AetherGraph worker pools as PBS Pro / OpenPBS / Torque jobs (docs/hpc.md).

One job = ``select=1:ncpus=<cores>[:mem=...]`` running ``processes`` ``aethergraph worker``
processes in the background of the job's shell. PBS has no "signal me before the walltime"
option, so each worker runs under ``timeout``, which sends it SIGTERM ``grace + 30`` seconds
before the walltime; ``qdel`` signals the job's processes itself, and a SIGTERM to the shell is
passed on to the workers, which the shell then waits for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from aethergraph.cluster.jobqueue import JobQueueCluster
from aethergraph.cluster.jobspec import hms
from aethergraph.cluster.slurm import script_body
from aethergraph.errors import RuntimeUsageError

#: PBS's one-letter job states in Slurm's words (the vocabulary of ``cluster.jobs``)
STATES = {
    "Q": "PENDING", "W": "PENDING", "T": "PENDING", "M": "PENDING", "H": "HELD",
    "R": "RUNNING", "B": "RUNNING", "S": "SUSPENDED", "U": "SUSPENDED",
    "E": "EXITING", "F": "FINISHED", "X": "FINISHED", "C": "COMPLETED",
}  # fmt: skip


def _quoted(word: str) -> str:
    """``word`` in single quotes, always (a bare ``a,b`` in an array reads as a typo)."""
    return "'" + word.replace("'", "'\\''") + "'"


class PBSCluster(JobQueueCluster):
    """Worker pools as PBS jobs (``qsub``, ``qdel``, ``qstat``); ``queue`` is ``-q``,
    ``account`` is ``-A``. The parameters are :class:`~aethergraph.cluster.jobqueue.
    JobQueueCluster`'s, named as dask-jobqueue's."""

    kind = "PBS"
    submit_command = "qsub"
    cancel_command = "qdel"
    status_command = "qstat"

    def render(self, env_file: Path) -> str:
        spec = self.spec
        select = f"select=1:ncpus={spec.cores}"
        if spec.memory_mib:
            select += f":mem={spec.memory_mib}mb"
        header = [
            f"-N {spec.job_name}",
            *([f"-q {spec.queue}"] if spec.queue else []),
            *([f"-A {spec.account}"] if spec.account else []),
            f"-l {select}",
            f"-l walltime={hms(spec.walltime_seconds)}",
            "-j oe",
            f"-o {self.log_directory}/",
        ]
        stop_after = spec.walltime_seconds - spec.stop_lead
        lines = [
            "#!/usr/bin/env bash",
            "# shellcheck disable=SC1090,SC1091  # the prologue may source files of yours",
            *(f"#PBS {option}" for option in header),
            *(ln if ln.startswith("#PBS") else f"#PBS {ln}" for ln in spec.job_extra_directives),
            *script_body(
                f"AetherGraph workers: {spec.processes} process(es) x {spec.slots} slot(s), "
                f"namespace {self.namespace}.",
                spec.job_script_prologue,
                env_file,
            ),
            'cd "${PBS_O_WORKDIR:-.}" || exit 1',
            "",
            f"# PBS sends no signal before the walltime: timeout sends each worker SIGTERM "
            f"{spec.stop_lead} s",
            f"# before it; the worker gives its running nodes {spec.grace:g} s and hands the "
            "rest back.",
            f"worker=({' '.join(_quoted(a) for a in spec.worker_command())})",
            "pids=()",
            f"for ((i = 0; i < {spec.processes}; i++)); do",
            f"  timeout --signal=TERM --kill-after={math.ceil(spec.grace) + 15} {stop_after} \\",
            '    "${worker[@]}" -n "job-${PBS_JOBID}-${i}@$(hostname)" &',
            '  pids+=("$!")',
            "done",
            "# qdel: pass a SIGTERM to this shell on to the workers, then wait for them to stop",
            "trap 'kill -TERM \"${pids[@]}\" 2>/dev/null' TERM",
            "until wait; do :; done",
        ]
        return "\n".join(lines) + "\n"

    def parse_job_id(self, stdout: str) -> str:
        """``qsub`` prints ``<id>.<server>``."""
        job_id = stdout.strip()
        if not job_id or any(c.isspace() for c in job_id):
            raise RuntimeUsageError(f"qsub answered {stdout.strip()!r}, not a job id")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["qstat", "-f", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, str]:
        """``qstat -f``: ``Job Id: <id>`` blocks with a ``job_state = <letter>`` line."""
        states: dict[str, str] = {}
        job_id = None
        for line in stdout.splitlines():
            if line.startswith("Job Id:"):
                job_id = line.partition(":")[2].strip()
            elif job_id and line.strip().startswith("job_state"):
                letter = line.partition("=")[2].strip()
                states[job_id] = STATES.get(letter, letter)
        return states
