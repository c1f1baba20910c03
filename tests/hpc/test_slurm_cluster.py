"""SlurmCluster against a real single-node Slurm (tests/hpc/conftest.py): a graph runs on workers
inside Slurm jobs, scale() and adapt() submit and cancel real jobs, and close() leaves none."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hpc_tools import hpc_sum_of_squares
from polling import wait_until
from slurm_testbed import TOOLS, Slurm, slurm_fixture  # noqa: F401  # the fixture

from aethergraph import run
from aethergraph.cluster import SlurmCluster
from aethergraph.errors import ConfigurationError

pytestmark = pytest.mark.slow


def _cluster(slurm: Slurm, tmp_path: Path, **kwargs: object) -> SlurmCluster:
    options: dict[str, object] = {
        "cores": 1,
        "processes": 1,
        "memory": "500MB",
        "walltime": "00:10:00",
        "tools": [TOOLS],
        "log_directory": tmp_path / "jobs",
        "env": slurm.env,
        "grace": 5,
        **kwargs,
    }
    if "redis_url" not in options:
        options["host"] = "127.0.0.1"  # the private Redis: the "compute node" is this host
    return SlurmCluster(**options)  # type: ignore[arg-type]


def _gone(slurm: Slurm, job_ids: set[str]) -> bool:
    return not job_ids & set(slurm.queue())


def test_a_graph_runs_in_a_slurm_job_and_the_job_is_gone_after_the_block(
    slurm: Slurm, tmp_path: Path
) -> None:
    with _cluster(slurm, tmp_path, jobs=1, cores=2) as cluster:
        (job,) = cluster.jobs
        assert slurm.queue()[job] in ("PENDING", "CONFIGURING", "RUNNING")
        cluster.wait_for_workers(1, timeout=60)
        (worker,) = cluster.live_workers()
        assert worker["job"] == job
        assert worker["concurrency"] == "2"
        result = cluster.run(hpc_sum_of_squares, n=6)
        assert result == {"total": 55, "jobs": [job]}  # every square ran in the Slurm job
        again = run(hpc_sum_of_squares, executor=cluster, n=3)  # the cluster as executor
        assert again == {"total": 5, "jobs": [job]}
        assert "AETHERGRAPH_BROKER_URL" not in cluster.job_script()
        secret = cluster.url.split("@")[0].split(":")[-1]
        assert secret
        assert secret not in cluster.job_script()
        assert cluster.env_file.stat().st_mode & 0o777 == 0o600
        log = next((tmp_path / "jobs").glob("aethergraph-*.out")).read_text()
        assert secret not in log
    wait_until(lambda: _gone(slurm, {job}), f"job {job} to leave squeue", timeout=30)
    assert not cluster.env_file.exists()
    assert cluster.broker.server is None


def test_scale_submits_and_cancels_jobs(
    slurm: Slurm, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    with _cluster(slurm, tmp_path, redis_url=redis_url, namespace=redis_namespace) as cluster:
        assert cluster.jobs == {}
        cluster.scale(2)
        jobs = set(cluster.jobs)
        assert len(jobs) == 2
        assert jobs <= set(slurm.queue())
        cluster.wait_for_workers(2, timeout=60)  # both jobs run at once: 1 core each
        assert {w["job"] for w in cluster.live_workers()} == jobs
        cluster.scale(1)
        (kept,) = cluster.active_jobs
        wait_until(lambda: _gone(slurm, jobs - {kept}), "the cancelled job to leave squeue")
        assert kept in slurm.queue()
        wait_until(
            lambda: {w["job"] for w in cluster.live_workers()} == {kept},
            "the cancelled job's worker to stop",
        )
    wait_until(lambda: _gone(slurm, jobs), "every job to leave squeue", timeout=30)


def test_adapt_scales_up_with_demand_and_down_to_zero_when_idle(
    slurm: Slurm, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    with _cluster(slurm, tmp_path, redis_url=redis_url, namespace=redis_namespace) as cluster:
        adaptive = cluster.adapt(minimum=0, maximum=2, interval=0.3, cooldown=2)
        assert cluster.jobs == {}
        seen: set[str] = set()
        result: dict[str, object] = {}

        def go() -> None:  # nodes wait in the client: no worker serves them yet
            result.update(cluster.run(hpc_sum_of_squares, n=8))

        runner = threading.Thread(target=go, daemon=True)  # a failure must not hang the exit
        runner.start()
        wait_until(lambda: seen.update(cluster.jobs) or len(seen) >= 2, "adapt to submit 2 jobs")
        runner.join(90)
        assert result["total"] == 140
        assert set(result["jobs"]) <= seen
        wait_until(lambda: not cluster.jobs, "adapt to cancel every job when idle", timeout=40)
        assert adaptive.target(0) == 0
        assert adaptive.target(5) == 2
    wait_until(lambda: _gone(slurm, seen), "the jobs to leave squeue", timeout=30)


def test_a_rejected_job_shows_sbatchs_error(slurm: Slurm, tmp_path: Path) -> None:
    cluster = _cluster(slurm, tmp_path, jobs=1, queue="nosuchpartition")
    with pytest.raises(ConfigurationError, match=r"(?s)sbatch rejected.*nosuchpartition"):
        cluster.start()
    assert cluster.broker.server is None  # a failed start stops what it started
