"""In-process scheduling cost: one graph of N no-op tool nodes vs plain ``asyncio.gather``.

Both sides run in the same process, in the same run, and are repeated; we report the median with
min and max, nodes (calls) per second, client CPU microseconds per node (process CPU time of all
threads, so the runtime thread is included) and the ratio to ``asyncio.gather``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from aethergraph import LocalExecutor, graph_fn, run, tool


@tool(outputs=["y"])
async def noop_async(i: int) -> dict[str, Any]:
    return {"y": i}


@tool(outputs=["y"])
def noop_sync(i: int) -> dict[str, Any]:
    return {"y": i}


@graph_fn(name="bench_wide_async", outputs=["n"])
async def wide_async(n: int) -> Any:
    handles = [noop_async(i=i) for i in range(n)]
    return {"n": len(handles)}


@graph_fn(name="bench_wide_sync", outputs=["n"])
async def wide_sync(n: int) -> Any:
    handles = [noop_sync(i=i) for i in range(n)]
    return {"n": len(handles)}


async def _gather(n: int) -> None:
    async def noop(i: int) -> dict[str, Any]:
        return {"y": i}

    await asyncio.gather(*[noop(i) for i in range(n)])


def _measure(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    walls, cpus = [], []
    for _ in range(repeats):
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return {"wall": walls, "cpu": cpus}


def run_inprocess(n: int = 10_000, repeats: int = 5) -> list[dict[str, Any]]:
    inline = LocalExecutor(sync_tools="inline")
    threads = LocalExecutor(sync_tools="thread")
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("asyncio.gather (plain coroutines)", lambda: asyncio.run(_gather(n))),
        ("aethergraph local, async tools", lambda: run(wide_async, n=n)),
        ("aethergraph local, sync tools inline", lambda: run(wide_sync, n=n, executor=inline)),
        ("aethergraph local, sync tools threads", lambda: run(wide_sync, n=n, executor=threads)),
    ]
    for _, fn in cases:  # warm up imports, thread pools, the runtime thread
        fn()
    rows = []
    for name, fn in cases:
        m = _measure(fn, repeats)
        wall = statistics.median(m["wall"])
        rows.append(
            {
                "workload": f"wide graph, {n} no-op nodes",
                "system": name,
                "repeats": repeats,
                "wall_s": {"median": wall, "min": min(m["wall"]), "max": max(m["wall"])},
                "nodes_per_s": n / wall,
                "cpu_us_per_node": statistics.median(m["cpu"]) / n * 1e6,
            }
        )
    base = rows[0]["wall_s"]["median"]
    for row in rows:
        row["ratio_vs_gather"] = row["wall_s"]["median"] / base
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'system':<40} {'nodes/s':>10} {'median s':>9} {'min s':>7} {'max s':>7} "
        f"{'CPU us/node':>12} {'x gather':>9}"
    )
    lines = [rows[0]["workload"] if rows else "", header, "-" * len(header)]
    for r in rows:
        w = r["wall_s"]
        lines.append(
            f"{r['system']:<40} {r['nodes_per_s']:>10,.0f} {w['median']:>9.3f} {w['min']:>7.3f} "
            f"{w['max']:>7.3f} {r['cpu_us_per_node']:>12.1f} {r['ratio_vs_gather']:>9.2f}"
        )
    return "\n".join(lines)
