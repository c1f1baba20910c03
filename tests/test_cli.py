"""The command line, run as real processes (the console script and ``python -m aethergraph``).

Nothing here needs Redis: commands that would talk to a broker are either stopped by a usage
error before they connect, or pointed at a loopback port where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aethergraph

SCRIPT = Path(sys.executable).with_name("aethergraph")  # the console script of this venv
SECRET = "hunter2-s3cret"

TOOLS = """
from aethergraph import graph_fn, tool


@tool(outputs=["y"])
def double(x: int) -> dict:
    return {"y": 2 * x}


@graph_fn(name="twice", outputs=["y"])
async def twice(x: int):
    return {"y": double(x=x)["y"]}
"""

TOOLLESS = """
from aethergraph import graph_fn


@graph_fn(name="plain", outputs=["y"])
async def plain(x: int):
    return {"y": x + 1}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(textwrap.dedent(TOOLS))
    (tmp_path / "plain.py").write_text(textwrap.dedent(TOOLLESS))
    return tmp_path


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process with no AETHERGRAPH_* variables but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AETHERGRAPH_")}
    clean["AETHERGRAPH_ARTIFACTS_DIR"] = str(cwd / "artifacts")
    clean.update(env or {})
    command = [sys.executable, "-m", "aethergraph"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=90
    )


def assert_one_line_usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- --version and python -m --------------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_version(project: Path, module: bool) -> None:
    proc = cli("--version", cwd=project, module=module)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"aethergraph {aethergraph.__version__}"


def test_python_m_aethergraph_runs_a_graph(project: Path) -> None:
    proc = cli(
        "run", "tools.py:twice", "-i", "x=21", "--local", "--quiet", cwd=project, module=True
    )
    assert proc.returncode == 0, proc.stderr
    assert '"y": 42' in proc.stdout


# -- a graph with no tools ----------------------------------------------------------------------


def test_toolless_graph_runs_in_process_even_with_a_broker(project: Path) -> None:
    # no LocalCluster is started and the configured broker is never contacted (nothing listens
    # there): a graph without tools has nothing for workers to do
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    for env in ({}, {"AETHERGRAPH_BROKER_URL": broker}):
        proc = cli("run", "plain.py:plain", "-i", "x=1", cwd=project, env=env)
        assert proc.returncode == 0, proc.stderr
        assert '"y": 2' in proc.stdout
        assert "no @tool in the target: running in-process" in proc.stderr
        assert "LocalCluster" not in proc.stderr


# -- -b/--broker --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["run", "tools.py:twice", "-i", "x=1"], ["demo"], ["worker", "--tools", "tools.py"]]
)
def test_broker_flag_is_validated_and_redacted(project: Path, command: list[str]) -> None:
    proc = cli(*command, "-b", f"http://admin:{SECRET}@broker:6379/0", cwd=project)
    line = assert_one_line_usage_error(proc)
    assert "-b/--broker must be a Redis URL" in line
    assert "http://admin:***@broker:6379/0" in line
    assert SECRET not in proc.stdout + proc.stderr


def test_run_broker_flag_overrides_the_environment(project: Path) -> None:
    env_port, flag_port = closed_port(), closed_port()
    env = {
        "AETHERGRAPH_BROKER_URL": f"redis://127.0.0.1:{env_port}/0",
        "AETHERGRAPH_BROKER_OUTAGE_TIMEOUT": "1",  # fail fast: nothing listens there
    }
    flag = f"redis://:{SECRET}@127.0.0.1:{flag_port}/0"
    proc = cli("run", "tools.py:twice", "-i", "x=1", "--quiet", "-b", flag, cwd=project, env=env)
    line = assert_one_line_usage_error(proc)
    assert f"cannot reach the broker at redis://:***@127.0.0.1:{flag_port}/0" in line
    assert str(env_port) not in line
    assert SECRET not in proc.stdout + proc.stderr


def test_worker_broker_flag_replaces_the_missing_variable(project: Path) -> None:
    proc = cli("worker", "--tools", "tools.py", cwd=project)
    assert "needs a broker: pass -b" in assert_one_line_usage_error(proc)
    # with -b the broker check passes; the bad flag after it is what stops the worker
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    proc = cli("worker", "--tools", "tools.py", "-b", broker, "--no-such-flag", cwd=project)
    assert "No such option '--no-such-flag'" in assert_one_line_usage_error(proc)


def test_local_and_broker_are_exclusive(project: Path) -> None:
    proc = cli("run", "plain.py:plain", "--local", "-b", "redis://h:6379/0", cwd=project)
    assert proc.returncode == 2
    assert "not allowed with argument --local" in proc.stderr


def test_invalid_broker_variable_is_shown_redacted(project: Path) -> None:
    env = {"AETHERGRAPH_BROKER_URL": f"http://admin:{SECRET}@broker:6379/0"}
    proc = cli("run", "tools.py:twice", "-i", "x=1", cwd=project, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "AETHERGRAPH_BROKER_URL: must be a Redis URL" in proc.stderr
    assert "http://admin:***@broker:6379/0" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


# -- options passed through to celery worker ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--no-such-flag"], "No such option '--no-such-flag'"),
        (["--max-tasks-per-child"], "requires an argument"),
        (["--max-tasks-per-child", "many"], "'many' is not a valid integer"),
        (["stray"], "takes no positional arguments"),
    ],
)
def test_bad_celery_worker_options_are_a_clean_usage_error(
    project: Path, extra: list[str], expected: str
) -> None:
    env = {"AETHERGRAPH_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    proc = cli("worker", "--tools", "tools.py", *extra, cwd=project, env=env)
    assert expected in assert_one_line_usage_error(proc)


@pytest.mark.parametrize("flag", ["--detach", "-D"])
def test_detach_is_refused(project: Path, flag: str) -> None:
    env = {"AETHERGRAPH_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    proc = cli("worker", "--tools", "tools.py", flag, "--pidfile", "w.pid", cwd=project, env=env)
    line = assert_one_line_usage_error(proc)
    assert "does not detach" in line
    assert "foreground" in line
    assert not (project / "w.pid").exists()  # nothing was started in the background
