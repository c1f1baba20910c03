"""AetherGraph's side: the workloads as graph functions over the tools in :mod:`bench.dist_tools`.

The same graphs run on the in-process executor and on the Celery executor of a
:class:`~aethergraph.cluster.LocalCluster`; only the runner differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aethergraph import graph_fn
from aethergraph.tracing.graph_fn import GraphFunction
from bench.dist_tools import dist_blob_size, dist_make_blob, dist_noop, dist_total
from bench.measure import Sample, expect, measure
from bench.workloads import CHAIN, FAN, PAYLOAD, WIDE, Sizes

Runner = Callable[..., dict[str, Any]]


@graph_fn(name="bench_chain", outputs=["y"])
async def chain_graph(hops: int) -> Any:
    h = dist_noop(x=0)
    for _ in range(hops - 1):
        h = dist_noop(x=h["y"])
    return {"y": h["y"]}


@graph_fn(name="bench_fan", outputs=["n"])
async def fan_graph(n: int) -> Any:
    handles = [dist_noop(x=i) for i in range(n)]
    return {"n": dist_total(xs=[h["y"] for h in handles])["n"]}


@graph_fn(name="bench_wide", outputs=["n"])
async def wide_graph(n: int) -> Any:
    handles = [dist_noop(x=i) for i in range(n)]  # the run ends when every node has finished
    return {"n": len(handles)}


@graph_fn(name="bench_payload", outputs=["n"])
async def payload_graph(size: int) -> Any:
    made = dist_make_blob(size=size)
    return {"n": dist_blob_size(blob=made["blob"])["n"]}


def _checked(
    run: Runner, gf: GraphFunction, want: dict[str, Any], **inputs: Any
) -> Callable[[], None]:
    def once() -> None:
        expect(run(gf, **inputs), want, f"AetherGraph {gf.name}")

    return once


def measure_aethergraph(run: Runner, s: Sizes) -> dict[str, Sample]:
    """Every workload through ``run(graph, **inputs)``, each after a warm-up run.

    The fan-out and the wide graph are warmed up at a small size (their full-size runs are the
    long ones on a cluster); they exercise the same path.
    """
    _checked(run, fan_graph, {"n": s.warm}, n=s.warm)()
    return {
        CHAIN: measure(_checked(run, chain_graph, {"y": 0}, hops=s.hops), s.repeats),
        FAN: measure(_checked(run, fan_graph, {"n": s.fan}, n=s.fan), s.repeats, warmup=False),
        WIDE: measure(_checked(run, wide_graph, {"n": s.wide}, n=s.wide), s.repeats, warmup=False),
        PAYLOAD: measure(_checked(run, payload_graph, {"n": s.payload}, size=s.payload), s.repeats),
    }
