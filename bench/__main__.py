"""``python -m bench [--quick] [--out DIR]``: run the benchmarks, print a table, write JSON."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from bench.inprocess import format_table, run_inprocess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats (smoke run)")
    parser.add_argument("--out", default="bench/results", help="where to write the JSON figures")
    args = parser.parse_args(argv)
    n, repeats = (1_000, 2) if args.quick else (10_000, 5)
    started = time.time()
    rows = run_inprocess(n=n, repeats=repeats)
    print(format_table(rows))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / ("inprocess-quick.json" if args.quick else "inprocess.json")
    meta = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "started": started,
        "quick": args.quick,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
