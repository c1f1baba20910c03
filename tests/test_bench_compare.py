"""``python -m bench.compare REV``: the benchmark of ``REV`` and of this tree, interleaved.

A smoke run against ``HEAD`` itself (one quick in-process pair): every AetherGraph row comes
back with both sides' figures, and the temporary worktree is gone afterwards — never what the
figures are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workloads import AG_LOCAL, CHAIN, FAN, PAYLOAD, WIDE

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or _git("rev-parse", "HEAD").returncode != 0,
    reason="bench.compare checks out a revision with git: needs git and a git checkout",
)


def test_compare_against_head_reports_every_row_and_cleans_up(tmp_path: Path) -> None:
    before = _git("worktree", "list", "--porcelain").stdout
    out = tmp_path / "compare.json"
    command = [sys.executable, "-m", "bench.compare", "HEAD", "--pairs", "1"]
    done = subprocess.run(
        [*command, "--only", "inprocess", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {(r["workload"], r["system"]) for r in rows} == {
        (w, AG_LOCAL) for w in (CHAIN, FAN, WIDE, PAYLOAD)
    }
    for row in rows:
        assert row["before"] > 0
        assert row["after"] > 0
        assert len(row["before_runs"]) == len(row["after_runs"]) == 1
    assert "before: HEAD, after: this tree" in done.stdout
    assert _git("worktree", "list", "--porcelain").stdout == before  # the worktree is gone


def test_an_unknown_revision_is_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "no-such-revision-xyz", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no-such-revision-xyz" in done.stderr
