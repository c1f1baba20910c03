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

from bench.compare import paired_change, verdict
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
        low, high = row["change_interval_pct"]
        assert low == high == row["change_pct"]  # one pair: no interval to speak of
        assert row["verdict"] in ("better", "worse", "no clear change")
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


def test_the_change_is_the_median_pair_ratio_with_an_interval() -> None:
    before = [10.0, 20.0, 10.0, 40.0, 10.0]  # the machine's mood moves both sides of a pair
    after = [11.0, 22.0, 11.0, 44.0, 11.0]
    change, low, high = paired_change(before, after)
    assert round(change, 6) == round(low, 6) == round(high, 6) == 10.0
    noisy = [1.05, 0.9, 1.2, 0.95, 1.1, 1.0, 0.85, 1.15]
    change, low, high = paired_change([1.0] * 8, noisy)
    assert low < change < high
    assert low < 0 < high
    assert verdict(low, high, "lower") == verdict(low, high, "higher") == "no clear change"
    assert verdict(3.0, 9.0, "lower") == "worse"
    assert verdict(3.0, 9.0, "higher") == "better"
    assert verdict(-9.0, -3.0, "lower") == "better"
