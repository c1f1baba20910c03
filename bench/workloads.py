"""What is measured: the workloads, their sizes, the systems, and the worker settings.

Each workload is run by every system that can express it; each system's module
(:mod:`bench.asyncio_side`, :mod:`bench.aethergraph_side`, :mod:`bench.dask_side`,
:mod:`bench.celery_side`) does the same work the same way its users would write it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    hops: int = 50
    fan: int = 2_000
    wide: int = 10_000
    payload: int = 10_000_000
    repeats: int = 5
    pings: int = 1_000

    @property
    def warm(self) -> int:
        """Size of the one small fan-out that warms each side up (the full-size runs are long)."""
        return min(self.fan, 100)


#: ``--quick``: every workload and system, small sizes, 2 repeats (a smoke run, not figures)
QUICK = Sizes(hops=10, fan=100, wide=300, payload=1_000_000, repeats=2, pings=100)

# workloads (keys of the JSON and the chart)
CHAIN, FAN, WIDE, PAYLOAD, FLOOR = "chain", "fan", "wide", "payload", "floor"
WORKLOADS = (CHAIN, FAN, WIDE, PAYLOAD, FLOOR)

# systems
ASYNCIO = "plain asyncio (coroutines in this process)"
AG_LOCAL = "AetherGraph, in-process executor"
DASK = "Dask distributed, LocalCluster(n_workers=2)"
AG_CELERY = "AetherGraph, Celery executor (LocalCluster)"
RAW_LOOP = "raw Celery: apply_async().get() loop"
RAW_CHAIN = "raw Celery: chain(...)"
RAW_GROUP = "raw Celery: group(...), client reduces"
RAW_CHORD = "raw Celery: chord(group, reducer)"
RAW_CHUNKS = "raw Celery: chunks(64), client reduces"
CHUNK = 64  # the pack size AetherGraph's executor reaches on these workloads (max_pack)
RAW_RESEND = "raw Celery: result backend, client re-sends"
REDIS_PING = "Redis PING from the client (redis-py)"
RAW_CELERY = (RAW_LOOP, RAW_CHAIN, RAW_GROUP, RAW_CHORD, RAW_CHUNKS, RAW_RESEND)


#: how many tasks one run of a workload is made of (for per-task figures)
def tasks(workload: str, system: str, s: Sizes) -> int:
    if workload == CHAIN:
        return s.hops
    if workload == FAN:
        return s.fan if system in (RAW_GROUP, RAW_CHUNKS) else s.fan + 1
    if workload == WIDE:
        return s.wide
    if workload == PAYLOAD:
        return 2
    return s.pings


def title(workload: str, s: Sizes) -> str:
    return {
        CHAIN: f"chain of {s.hops} dependent no-op tools: latency per hop",
        FAN: f"fan-out of {s.fan:,} no-op tools + 1 reducer: throughput",
        WIDE: f"wide graph of {s.wide:,} independent no-op nodes: client cost per node",
        PAYLOAD: f"payload of {s.payload / 1e6:g} MB, producer -> consumer: wall time",
        FLOOR: "Redis floor: one round trip from the client",
    }[workload]


#: the worker settings of every distributed system (printed with the table, kept in the JSON)
CELERY_POOL = "prefork"
CELERY_CONCURRENCY = 2
WORKER_SETTINGS = {
    "celery (both sides)": {
        "worker processes": 1,
        "pool": f"{CELERY_POOL} -c {CELERY_CONCURRENCY}",
        "prefetch_multiplier": 1,
        "acks_late": True,
        "task events": "-E",
        "serializer": "json",
        # every benchmark tool is sync: one node at a time per slot, the default (AetherGraph's
        # --async-concurrency opt-in would only change async tools)
        "nodes at once": "one per slot (sync tools; no --async-concurrency)",
        "broker": "private redis-server started by the LocalCluster (DB 0 / DB 1)",
    },
    "dask": {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "scheduler": "in the client process (LocalCluster)",
    },
}
