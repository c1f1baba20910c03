"""Every runnable example, and the CLI demo, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    proc = _run([str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip(), "an example should show its result"


def test_cli_demo_runs_on_a_local_cluster() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERGRAPH_BROKER")}
    proc = subprocess.run(
        [sys.executable, "-m", "aethergraph.cli", "demo", "--mermaid"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "LocalCluster: 2 worker processes" in proc.stderr
    assert '"best": 1.0' in proc.stdout
    assert "artifact://sha256/" in proc.stdout
    assert "flowchart TD" in proc.stdout
    assert "[18/18]" in proc.stderr
    # the channel message sent by a tool on a worker reached this process
    assert "[demo_sweep/pick_best_0] closest to target 10.0" in proc.stdout


def test_cli_demo_in_process() -> None:
    proc = _run(["-m", "aethergraph.cli", "demo", "--local", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert '"best": 1.0' in proc.stdout
    assert "LocalCluster" not in proc.stderr


def test_cli_run_file_target_with_inputs() -> None:
    proc = _run(
        [
            "-m",
            "aethergraph.cli",
            "run",
            "examples/quickstart.py:stats",
            "-i",
            "xs=[1, 2]",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "LocalCluster" in proc.stderr  # the file's own tools ran on worker processes
    assert '"total": 3' in proc.stdout
    assert '"scaled": 30' in proc.stdout


def test_cli_reports_bad_input_clearly() -> None:
    proc = _run(["-m", "aethergraph.cli", "run", "examples/quickstart.py:stats", "--local"])
    assert proc.returncode == 2
    assert "missing required input(s) ['xs']" in proc.stderr
    proc = _run(["-m", "aethergraph.cli", "run", "examples/quickstart.py:nope"])
    assert proc.returncode == 2
    assert "no @graph_fn named 'nope'" in proc.stderr
