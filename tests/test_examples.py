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


def test_cli_demo() -> None:
    proc = _run(["-m", "aethergraph.cli", "demo", "--mermaid"])
    assert proc.returncode == 0, proc.stderr
    assert '"best": 1.0' in proc.stdout
    assert "artifact://sha256/" in proc.stdout
    assert "flowchart TD" in proc.stdout
    assert "[18/18]" in proc.stderr


def test_cli_run_file_target_with_inputs() -> None:
    proc = _run(
        [
            "-m",
            "aethergraph.cli",
            "run",
            "examples/quickstart.py:stats",
            "-i",
            "xs=[1, 2]",
            "--quiet",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert '"total": 3' in proc.stdout
    assert '"scaled": 30' in proc.stdout


def test_cli_reports_bad_input_clearly() -> None:
    proc = _run(["-m", "aethergraph.cli", "run", "examples/quickstart.py:stats", "--quiet"])
    assert proc.returncode == 2
    assert "missing required input(s) ['xs']" in proc.stderr
    proc = _run(["-m", "aethergraph.cli", "run", "examples/quickstart.py:nope"])
    assert proc.returncode == 2
    assert "no @graph_fn named 'nope'" in proc.stderr
