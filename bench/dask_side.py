"""Dask distributed: ``LocalCluster(n_workers=2, threads_per_worker=1)`` and futures.

The workloads as a Dask user writes them: ``client.submit`` chained on futures, ``client.map``
plus a reducer submitted on the futures, and a producer future passed to a consumer (the value
moves worker to worker). With a ``LocalCluster`` the scheduler runs inside the client process, so
its CPU, memory and socket traffic count as the client's — as AetherGraph's scheduler does.
"""

from __future__ import annotations

import random
from typing import Any

from bench.measure import Sample, expect, measure
from bench.workloads import CHAIN, FAN, PAYLOAD, WIDE, WORKER_SETTINGS, Sizes


def noop(x: int) -> int:
    return x


def total(xs: list[int]) -> int:
    return len(xs)


def make_blob(size: int) -> bytes:
    return random.randbytes(size)


def blob_size(blob: bytes) -> int:
    return len(blob)


def measure_dask(s: Sizes) -> dict[str, Sample]:
    """Start the cluster, measure every workload, stop it."""
    from distributed import Client, LocalCluster

    settings: dict[str, Any] = WORKER_SETTINGS["dask"]
    cluster = LocalCluster(
        n_workers=settings["n_workers"],
        threads_per_worker=settings["threads_per_worker"],
        processes=settings["processes"],
        dashboard_address=None,
        silence_logs=40,  # logging.ERROR
    )
    try:
        with Client(cluster) as client:

            def chain() -> None:
                f = client.submit(noop, 0, pure=False)
                for _ in range(s.hops - 1):
                    f = client.submit(noop, f, pure=False)
                expect(f.result(), 0, "Dask chain")

            def fan() -> None:
                futures = client.map(noop, range(s.fan), pure=False)
                expect(client.submit(total, futures, pure=False).result(), s.fan, "Dask fan-out")

            def wide() -> None:
                futures = client.map(noop, range(s.wide), pure=False)
                expect(len(client.gather(futures)), s.wide, "Dask wide")

            def payload() -> None:
                made = client.submit(make_blob, s.payload, pure=False)
                used = client.submit(blob_size, made, pure=False)
                expect(used.result(), s.payload, "Dask payload")

            client.submit(total, client.map(noop, range(s.warm), pure=False), pure=False).result()
            return {
                CHAIN: measure(chain, s.repeats),
                FAN: measure(fan, s.repeats, warmup=False),
                WIDE: measure(wide, s.repeats, warmup=False),
                PAYLOAD: measure(payload, s.repeats),
            }
    finally:
        cluster.close()
