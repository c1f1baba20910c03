"""``python -m bench [--quick] [--only {inprocess,distributed}] [--out DIR]``.

Runs the benchmarks, prints a table per section and writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

SECTIONS = ("inprocess", "distributed")


def _meta(quick: bool, started: float) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "started": started,
        "quick": quick,
    }


def _write(out_dir: Path, section: str, quick: bool, data: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (f"{section}-quick.json" if quick else f"{section}.json")
    out.write_text(json.dumps(data, indent=2))
    print(f"\nwrote {out}")


def run_inprocess_section(quick: bool, out_dir: Path) -> None:
    from bench.inprocess import format_table, run_inprocess

    started = time.time()
    n, repeats = (1_000, 2) if quick else (10_000, 5)
    rows = run_inprocess(n=n, repeats=repeats)
    print(format_table(rows))
    _write(out_dir, "inprocess", quick, {"meta": _meta(quick, started), "rows": rows})


def run_distributed_section(quick: bool, out_dir: Path) -> None:
    from bench import distributed

    started = time.time()
    sizes = distributed.QUICK if quick else distributed.Sizes()
    rows, ratios = distributed.run_distributed(sizes)
    print(distributed.format_table(rows, ratios))
    meta = {
        **_meta(quick, started),
        "sizes": vars(sizes),
        "worker_settings": distributed.POOL_SETTINGS,
        "seconds": time.time() - started,
    }
    _write(out_dir, "distributed", quick, {"meta": meta, "rows": rows, "ratios": ratios})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats (smoke run)")
    parser.add_argument("--only", choices=SECTIONS, help="run one section (default: all)")
    parser.add_argument("--out", default="bench/results", help="where to write the JSON figures")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    if args.only in (None, "inprocess"):
        run_inprocess_section(args.quick, out_dir)
    if args.only in (None, "distributed"):
        if args.only is None:
            print()
        run_distributed_section(args.quick, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
