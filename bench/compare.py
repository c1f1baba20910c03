"""``python -m bench.compare REV [--pairs N] [--only SIDES] [--quick]``: this tree against ``REV``.

A before/after figure from two single runs is mostly the machine's mood on a small shared box:
between two runs minutes apart the same raw-Celery row moves by 20-30 %, and so does plain
asyncio, whose code is the same in both. So this runs the benchmark *interleaved* — ``REV``,
this tree, ``REV``, this tree, ... ``--pairs`` times — and reports, per AetherGraph row, each
side's median, the change as the median over the pairs of the pair's ratio (after / before,
each run's own median), and a 95 % bootstrap interval of that change. Drift that lasts longer
than one pair hits both sides alike; the interval says how much of the change the remaining
noise could explain. A row is called better or worse only when its interval excludes no change.

``REV`` is checked out into a temporary git worktree and imported from there
(``PYTHONPATH``) by this interpreter, so both sides run with the same installed dependencies;
a revision that needs a package this environment lacks fails with its import error. The
worktree is removed afterwards. Each side's runs write into a temporary folder; nothing is
written into the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Figures = dict[tuple[str, str], float]


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _one_run(tree: Path, out: Path, bench_args: list[str]) -> list[dict[str, Any]]:
    """One ``python -m bench`` of the package in ``tree``; its AetherGraph rows."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "bench", "--no-chart", "--out", str(out), *bench_args]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the benchmark failed in {tree}:\n{done.stderr[-2000:]}")
    stem = "bench-quick" if "--quick" in bench_args else "bench"
    rows = json.loads((out / f"{stem}.json").read_text())["rows"]
    return [row for row in rows if row["system"].startswith("AetherGraph")]


def paired_change(before: list[float], after: list[float]) -> tuple[float, float, float]:
    """The median change over the pairs, in %, and its 95 % bootstrap interval (seeded).

    Each pair's ratio is taken on its own (the two runs were minutes apart, under the same
    drift); the interval resamples the pairs 2000 times. One pair gives a zero-width interval.
    """
    ratios = [a / b for a, b in zip(after, before, strict=True) if b]
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(2000))
    low, high = medians[int(0.025 * len(medians))], medians[int(0.975 * len(medians)) - 1]
    middle = statistics.median(ratios)
    return (middle - 1) * 100, (low - 1) * 100, (high - 1) * 100


def _sign(better: str) -> int:
    """+1 where a higher figure is better, -1 where a lower one is."""
    return 1 if better == "higher" else -1


def verdict(low: float, high: float, better: str) -> str:
    """``better`` / ``worse`` when the whole interval of the change is on one side of zero."""
    sign = _sign(better)
    if sign * low > 0 and sign * high > 0:
        return "better"
    if sign * low < 0 and sign * high < 0:
        return "worse"
    return "no clear change"


def compare(rev: str, pairs: int, bench_args: list[str], say: Any = print) -> list[dict[str, Any]]:
    """Run ``rev`` and this tree alternately ``pairs`` times; one result row per figure."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    runs: dict[str, list[Figures]] = {"before": [], "after": []}
    units: dict[tuple[str, str], tuple[str, str]] = {}  # figure -> (unit, which way is better)
    with tempfile.TemporaryDirectory(prefix="aethergraph-compare-") as tmp:
        old_tree = Path(tmp) / "before"
        _git("worktree", "add", "--detach", str(old_tree), sha)
        try:
            for pair in range(1, pairs + 1):
                for side, tree in (("before", old_tree), ("after", ROOT)):
                    what = sha[:10] if side == "before" else "this tree"
                    say(f"pair {pair}/{pairs}: {side} ({what})")
                    figures: Figures = {}
                    for row in _one_run(tree, Path(tmp) / f"{side}-{pair}", bench_args):
                        key = (row["workload"], row["system"])
                        figures[key] = float(row["value"]["median"])
                        units[key] = (row["unit"], row["better"])
                    runs[side].append(figures)
        finally:
            _git("worktree", "remove", "--force", str(old_tree))
    result = []
    for key in runs["after"][0]:
        if not all(key in r for r in runs["before"]):
            continue  # a row REV's benchmark does not have: nothing to compare it with
        before_runs = [r[key] for r in runs["before"]]
        after_runs = [r[key] for r in runs["after"]]
        unit, better = units[key]
        change, low, high = paired_change(before_runs, after_runs)
        result.append(
            {
                "workload": key[0],
                "system": key[1],
                "unit": unit,
                "better": better,
                "before": statistics.median(before_runs),
                "after": statistics.median(after_runs),
                "change_pct": change,
                "change_interval_pct": [low, high],
                # positive: the figure got better, whichever way "better" points for it
                "gain_pct": _sign(better) * change,
                "verdict": verdict(low, high, better),
                "before_runs": before_runs,
                "after_runs": after_runs,
            }
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("rev", help="the git revision to compare this tree against (e.g. main~3)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved before/after runs (5)")
    parser.add_argument("--only", default="inprocess,celery", help="bench sides (inprocess,celery)")
    parser.add_argument(
        "--quick", action="store_true", help="the bench's small sizes (a smoke run)"
    )
    parser.add_argument("--json", dest="json_out", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    bench_args = ["--only", args.only] + (["--quick"] if args.quick else [])
    rows = compare(args.rev, args.pairs, bench_args, lambda m: print(m, file=sys.stderr))
    print(
        f"{args.pairs} interleaved pair(s); change: median of the pairs' ratios "
        "[95 % bootstrap interval]"
    )
    print(f"before: {args.rev}, after: this tree")
    for row in rows:
        print(
            f"  {row['workload']:8s} {row['system'][:44]:44s} {row['unit']:18s} "
            f"{row['before']:10.4g} -> {row['after']:10.4g}  {row['change_pct']:+6.1f} % "
            f"[{row['change_interval_pct'][0]:+.1f}, {row['change_interval_pct'][1]:+.1f}]  "
            f"{row['verdict']}"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
