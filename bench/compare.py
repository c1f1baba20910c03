"""``python -m bench.compare REV [--pairs N] [--only SIDES] [--quick]``: this tree against ``REV``.

A before/after figure from two single runs is mostly the machine's mood on a small shared box:
between two runs minutes apart the same raw-Celery row moves by 20-30 %, and so does plain
asyncio, whose code is the same in both. So this runs the benchmark *interleaved* — ``REV``,
this tree, ``REV``, this tree, ... ``--pairs`` times — and reports, per AetherGraph row, the
median over the pairs of each side's median, and the change. Drift that lasts longer than one
pair hits both sides alike.

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
        before = statistics.median(r[key] for r in runs["before"])
        after = statistics.median(r[key] for r in runs["after"])
        unit, better = units[key]
        change = (after / before - 1) * 100 if before else float("nan")
        result.append(
            {
                "workload": key[0],
                "system": key[1],
                "unit": unit,
                "better": better,
                "before": before,
                "after": after,
                "change_pct": change,
                # positive: the figure got better, whichever way "better" points for it
                "gain_pct": change if better == "higher" else -change,
                "before_runs": [r[key] for r in runs["before"]],
                "after_runs": [r[key] for r in runs["after"]],
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
    print(f"median over {args.pairs} interleaved pair(s) of each run's median")
    print(f"before: {args.rev}, after: this tree")
    for row in rows:
        print(
            f"  {row['workload']:8s} {row['system'][:44]:44s} {row['unit']:18s} "
            f"{row['before']:10.4g} -> {row['after']:10.4g}  ({row['change_pct']:+6.1f} %, "
            f"{'better' if row['gain_pct'] >= 0 else 'worse'})"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
