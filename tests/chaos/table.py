"""``make chaos``: every chaos scenario N times (default 10), then a table of what happened.

python tests/chaos/table.py [--trials N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import ALL, Trial, run_trial, summary


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    rows = []
    failed = False
    for name in [n for n in ALL if args.only in n]:
        trials: list[Trial] = []
        for k in range(args.trials):
            trial = run_trial(name)
            trials.append(trial)
            print(f"{name} #{k + 1}: lost={trial.lost} dup={trial.duplicates} "
                  f"reruns={trial.reruns} recovery={_seconds(trial.recovery)} {trial.notes}",
                  file=sys.stderr, flush=True)  # fmt: skip
        s = summary(trials)
        bad = (s["lost"] or 0) > 0 or s["duplicates"] > 0 or (s["max"] or 0) >= s["bound"]
        failed |= bad
        lost = "—" if s["lost"] is None else str(s["lost"])
        rows.append(
            f"| {name} | {s['trials']} | {lost} | {s['duplicates']} | {s['reruns']} | "
            f"{_seconds(s['median'])} | {_seconds(s['max'])} | < {s['bound']:g} s |"
        )
    print("| scenario | trials | nodes lost | duplicates | re-runs | recovery median | "
          "recovery max | bound |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
