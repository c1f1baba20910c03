"""``python -m bench [--quick] [--only SIDES] [--out DIR]``: every workload, every system, one run.

Prints the table, writes the raw figures (``bench.json``) and the chart (``bench.png``) to
``--out`` (``bench/results``; ``bench-quick.*`` with ``--quick``). See ``bench/README.md``.

The systems run one side at a time, so no two of them compete for the cores:

1. ``inprocess``: plain asyncio, then AetherGraph's in-process executor;
2. ``dask``: a Dask ``LocalCluster(n_workers=2, threads_per_worker=1)``, stopped afterwards;
3. ``celery``: a :class:`~aethergraph.cluster.LocalCluster` (private redis-server, one
   ``aethergraph worker``) for AetherGraph's Celery executor; its worker is stopped, the Redis
   round trip is measured with nothing else running, then a raw Celery worker with the same
   settings serves the raw Celery workloads on the same Redis (another DB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.measure import Sample
from bench.workloads import (
    AG_CELERY,
    AG_LOCAL,
    ASYNCIO,
    CELERY_CONCURRENCY,
    CELERY_POOL,
    DASK,
    QUICK,
    WORKER_SETTINGS,
    Sizes,
)

SIDES = ("inprocess", "dask", "celery")
ROOT = Path(__file__).resolve().parent.parent
TOOLS = str(ROOT / "bench" / "dist_tools.py")
Measured = dict[tuple[str, str], Sample]


class Progress:
    """One line per step on stderr, with the time since the start: long runs show they move."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def _tag(system: str, samples: dict[str, Sample]) -> Measured:
    return {(workload, system): sample for workload, sample in samples.items()}


def run_inprocess(s: Sizes, say: Progress) -> Measured:
    from aethergraph import run
    from bench.aethergraph_side import measure_aethergraph
    from bench.asyncio_side import measure_asyncio

    say("plain asyncio")
    measured = _tag(ASYNCIO, measure_asyncio(s))
    say("AetherGraph, in-process executor")
    measured |= _tag(
        AG_LOCAL, measure_aethergraph(lambda gf, **kw: run(gf, executor="local", **kw), s)
    )
    return measured


def run_dask(s: Sizes, say: Progress) -> Measured:
    from bench.dask_side import measure_dask

    say("Dask LocalCluster(n_workers=2, threads_per_worker=1)")
    return _tag(DASK, measure_dask(s))


def run_celery(s: Sizes, say: Progress) -> tuple[Measured, tuple[Sample, list[float]]]:
    from aethergraph.cluster import LocalCluster
    from bench.aethergraph_side import measure_aethergraph
    from bench.celery_side import (
        measure_ping,
        measure_raw_celery,
        raw_celery_worker,
        stop_process_group,
    )

    say(f"AetherGraph on a LocalCluster (1 worker, {CELERY_POOL} -c {CELERY_CONCURRENCY})")
    with LocalCluster(
        workers=1, tools=[TOOLS], concurrency=CELERY_CONCURRENCY, pool=CELERY_POOL
    ) as cluster:
        measured = _tag(AG_CELERY, measure_aethergraph(cluster.run, s))
        stop_process_group(cluster.workers[0])  # free the cores before the next side
        raw_url = cluster.url.rsplit("/", 1)[0] + "/1"  # the same private Redis, its own DB
        say("Redis PING floor (no worker running)")
        pings = measure_ping(raw_url, s)
        say(f"raw Celery worker ({CELERY_POOL} -c {CELERY_CONCURRENCY}, same settings)")
        with raw_celery_worker(raw_url):
            measured |= measure_raw_celery(s)
    return measured, pings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats: a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(SIDES),
        help=f"comma-separated sides to run (default: {','.join(SIDES)})",
    )
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results"), help="where to write JSON and PNG"
    )
    parser.add_argument(
        "--no-chart", action="store_true", help="skip the PNG (no matplotlib needed)"
    )
    args = parser.parse_args(argv)
    sides = [side.strip() for side in args.only.split(",") if side.strip()]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown or not sides:
        parser.error(
            f"--only takes a comma-separated subset of {', '.join(SIDES)}; got {args.only!r}"
        )

    from bench import report

    s = QUICK if args.quick else Sizes()
    say = Progress()
    started = time.time()
    measured: Measured = {}
    pings = None
    if "inprocess" in sides:
        measured |= run_inprocess(s, say)
    if "dask" in sides:
        measured |= run_dask(s, say)
    if "celery" in sides:
        celery_measured, pings = run_celery(s, say)
        measured |= celery_measured

    rows = [report.build_row(w, system, sample, s) for (w, system), sample in measured.items()]
    order = {w: i for i, w in enumerate(report.WORKLOADS)}
    rows.sort(key=lambda r: order[r["workload"]])  # stable: keeps the side order within a workload
    if pings is not None:
        rows.append(report.floor_row(pings[0], pings[1], s))
    ratios = report.build_ratios(rows)
    say("done")
    print()
    print(report.format_table(rows, ratios, s))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if args.quick else "bench"
    meta: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "started": started,
        "seconds": time.time() - started,
        "quick": args.quick,
        "sides": sides,
        "sizes": vars(s),
        "worker_settings": WORKER_SETTINGS,
    }
    data = {
        "meta": meta,
        "rows": rows,
        "ratios": ratios,
        "furthest": report.furthest_from_goal(ratios),
    }
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2))
    print(f"\nwrote {out / f'{stem}.json'}")
    if not args.no_chart:
        from bench.chart import draw

        print(f"wrote {draw(rows, s, out / f'{stem}.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
