"""Load without leaks: a 20,000-node fan-out on the two-worker pool completes, and afterwards
no key of the run lives without a TTL and the client's memory is back near where it started."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from typing import Any

import redis
from celery_tools import d_inc, d_sum

from aethergraph import graph_fn
from aethergraph.cluster import LocalCluster

N = 20_000


@graph_fn(name="dist_load_fan")
async def fan(n: int) -> Any:
    return {"total": d_sum(xs=[d_inc(x=i)["y"] for i in range(n)])["total"]}


def _rss_mb() -> float:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, as measured below
    except (OSError, AttributeError):
        pass
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def test_a_20k_fan_out_completes_and_leaves_nothing_without_expiry(
    cluster: LocalCluster,
) -> None:
    assert cluster.run(fan, n=200) == {"total": sum(range(1, 201))}  # warm: imports, pools
    before = _rss_mb()
    assert cluster.run(fan, n=N) == {"total": sum(range(1, N + 1))}
    counts = fan.last_graph.status_counts()
    assert counts["done"] == N + 1
    del counts
    fan.last_graph = None  # the user drops the graph too
    grown = _rss_mb() - before
    assert grown < 64, f"client memory grew by {grown:.0f} MB after the run"

    client = redis.Redis.from_url(cluster.url)
    try:
        ns = cluster.namespace
        run_keys = [
            k.decode()
            for pattern in (f"{ns}:client:*", f"{ns}:run:*", f"{ns}:mem*", f"{ns}:art:*")
            for k in client.scan_iter(match=pattern, count=1000)
        ]
        no_ttl = [k for k in run_keys if client.pttl(k) < 0]
    finally:
        client.close()
    assert not no_ttl, f"keys of the run without a TTL: {no_ttl[:5]}"
