"""Plain asyncio: the same work as coroutines in this process — the floor of any Python runtime."""

from __future__ import annotations

import asyncio
import random

from bench.measure import Sample, expect, measure
from bench.workloads import CHAIN, FAN, PAYLOAD, WIDE, Sizes


async def noop(x: int) -> int:
    return x


async def total(xs: list[int]) -> int:
    return len(xs)


async def make_blob(size: int) -> bytes:
    return random.randbytes(size)


async def blob_size(blob: bytes) -> int:
    return len(blob)


async def _chain(hops: int) -> int:
    x = await noop(0)
    for _ in range(hops - 1):
        x = await noop(x)
    return x


async def _fan(n: int) -> int:
    return await total(list(await asyncio.gather(*(noop(i) for i in range(n)))))


async def _wide(n: int) -> int:
    return len(await asyncio.gather(*(noop(i) for i in range(n))))


async def _payload(size: int) -> int:
    return await blob_size(await make_blob(size))


def measure_asyncio(s: Sizes) -> dict[str, Sample]:
    """Each workload on one event loop kept for the whole measurement (no per-run loop setup)."""
    with asyncio.Runner() as runner:

        def chain() -> None:
            expect(runner.run(_chain(s.hops)), 0, "asyncio chain")

        def fan() -> None:
            expect(runner.run(_fan(s.fan)), s.fan, "asyncio fan-out")

        def wide() -> None:
            expect(runner.run(_wide(s.wide)), s.wide, "asyncio wide")

        def payload() -> None:
            expect(runner.run(_payload(s.payload)), s.payload, "asyncio payload")

        return {
            CHAIN: measure(chain, s.repeats),
            FAN: measure(fan, s.repeats),
            WIDE: measure(wide, s.repeats),
            PAYLOAD: measure(payload, s.repeats),
        }
