"""The tools of the executor conformance suite.

They live at module level in this one file because Celery workers import it by path
(``aethergraph worker --tools .../conformance_tools.py``) and serve exactly the tools it defines:
a tool defined inside a test function would exist only in the test process.

Coordination between a test and its tools (barriers, counters, "started" / "stopped" signals, which
tools ran, the concurrency observed) goes through Redis, so it works whether a tool runs on the
test's own runtime loop, on one of its threads, or in a worker process. The Redis URL comes from
the environment variable ``COORDINATION_ENV`` (set by the test session in ``os.environ`` and handed
to the workers); the keys are unique per test and passed to the tools as arguments. Every wait is
bounded, and a tool that waits for a "release" can always be let go by the test.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis

from aethergraph import tool

COORDINATION_ENV = "AETHERGRAPH_CONFORMANCE_REDIS"
WAIT = 30.0  # seconds a tool waits at most for a signal from the test or another tool

_clients: dict[tuple[int, str], redis.Redis] = {}


def coordination_url() -> str:
    url = os.environ.get(COORDINATION_ENV)
    if not url:
        raise RuntimeError(f"{COORDINATION_ENV} is not set: the conformance tools need Redis")
    return url


def client() -> redis.Redis:
    """A synchronous Redis client for this process (quick commands only, never blocking ones)."""
    key = (os.getpid(), coordination_url())
    found = _clients.get(key)
    if found is None:
        found = _clients[key] = redis.Redis.from_url(key[1], decode_responses=True)
    return found


def wait_for_sync(key: str, within: float = WAIT) -> str | None:
    """Pop one item from the list ``key``, waiting at most ``within`` seconds."""
    conn = redis.Redis.from_url(
        coordination_url(), decode_responses=True, socket_timeout=within + 5
    )
    try:
        item = conn.blpop([key], timeout=within)
    finally:
        conn.close()
    return None if item is None else str(item[1])


async def wait_for(key: str, within: float = WAIT) -> str | None:
    """:func:`wait_for_sync` for async tools, always cancellable.

    The blocking pop runs on a thread: cancelling the awaiting tool is then always delivered (an
    asyncio Redis client can swallow a cancellation that lands while it connects). A thread left
    behind ends when the test releases the key in its cleanup, or after ``within`` seconds.
    """
    return await asyncio.to_thread(wait_for_sync, key, within)


class Coordination:
    """The test's side of the signals: key names unique to one test, bounded waits."""

    def __init__(self, url: str, namespace: str) -> None:
        self.namespace = namespace
        # no socket timeout: a BLPOP returns by itself when its own timeout is up
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=None)

    def key(self, name: str) -> str:
        """The key ``name`` of this test (``namespace`` is unique per test)."""
        return f"{self.namespace}:{name}"

    def wait(self, name: str, within: float = WAIT) -> str | None:
        """Pop one item pushed onto ``name``, waiting at most ``within`` seconds."""
        item = self.client.blpop([self.key(name)], timeout=within)
        return None if item is None else str(item[1])

    def push(self, name: str, *values: object) -> None:
        self.client.rpush(self.key(name), *(values or ("go",)))

    def items(self, name: str) -> list[str]:
        return [str(v) for v in self.client.lrange(self.key(name), 0, -1)]

    def close(self) -> None:
        self.client.close()


# -- plain tools -------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["y"])
def cf_inc_sync(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["total"])
def cf_sum(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool(outputs=["out"])
async def cf_echo(value: Any) -> dict[str, Any]:
    return {"out": value}


@tool(outputs=["y"])
async def cf_record(log: str, tag: str, x: Any = None) -> dict[str, Any]:
    """Appends ``tag`` to the list ``log``: which tools ran, in which order."""
    client().rpush(log, tag)
    return {"y": tag}


@tool(outputs=["y"])
async def cf_boom(x: int = 0) -> dict[str, Any]:
    raise ValueError(f"boom {x}")


# -- concurrency -------------------------------------------------------------------------------


@tool(outputs=["ok"])
async def cf_meet(i: int, arrivals: str, release: str, width: int) -> dict[str, Any]:
    """A barrier: passes only once ``width`` calls are running at the same time."""
    arrived = int(client().incr(arrivals))
    if arrived == width:  # the last one to arrive lets everybody through
        client().rpush(release, *(["go"] * width))
    if await wait_for(release) is None:
        seen = client().get(arrivals)
        raise TimeoutError(f"barrier: only {seen} of {width} nodes ran at the same time")
    return {"ok": i}


@tool(outputs=["y"])
async def cf_slot(i: int, running: str, observed: str) -> dict[str, Any]:
    """Records how many calls run at once (``running``) into the list ``observed``."""
    now = int(client().incr(running))
    client().rpush(observed, now)
    try:
        # The tool's "work": it keeps its slot a moment, so that a call started beyond the limit
        # would overlap with it and be observed (not a synchronization: nothing waits on it).
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
    finally:
        client().decr(running)
    return {"y": i}


# -- failures ----------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_forever(started: str, release: str) -> dict[str, Any]:
    """Signals ``started``, then runs until cancelled (or released by the test's cleanup)."""
    client().rpush(started, os.getpid())
    await wait_for(release)
    return {"y": 1}


@tool(outputs=["y"])
async def cf_boom_later(started: str) -> dict[str, Any]:
    """Fails once ``started`` was signalled (by a node running next to it)."""
    await wait_for(started)
    raise RuntimeError("late boom")


@tool(outputs=["y"], retries=3, retry_backoff=0.01, retry_jitter=False)
def cf_flaky(x: int, calls: str) -> dict[str, Any]:
    """Fails its first two calls (counted in the list ``calls``)."""
    n = int(client().rpush(calls, x))
    if n < 3:
        raise ConnectionError(f"transient {n}")
    return {"y": x}


@tool(outputs=["y"], retries=2, retry_backoff=0.0)
async def cf_always_fails() -> dict[str, Any]:
    raise KeyError("nope")


# -- timeouts ----------------------------------------------------------------------------------


@tool(outputs=["y"], timeout=0.2)
async def cf_slow(stopped: str, release: str) -> dict[str, Any]:
    """Runs past its timeout; its ``finally`` signals ``stopped`` when it is cancelled."""
    try:
        await wait_for(release)
    finally:
        client().rpush(stopped, os.getpid())
    return {"y": 1}


@tool(outputs=["y"], timeout=0.2)
def cf_slow_sync(release: str) -> dict[str, Any]:
    """A sync tool that runs past its timeout (until the test releases it)."""
    wait_for_sync(release)
    return {"y": 1}


# -- cancellation ------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_wait_forever(x: int, started: str, stopped: str, release: str) -> dict[str, Any]:
    """Signals ``started``, runs until cancelled, and signals ``stopped`` from its ``finally``."""
    client().rpush(started, os.getpid())
    try:
        await wait_for(release)
    finally:
        client().rpush(stopped, os.getpid())
    return {"y": x}


@tool(outputs=["y"])
async def cf_block(started: str, stopped: str, release: str) -> dict[str, Any]:
    """Like ``cf_wait_forever``, without an input."""
    client().rpush(started, os.getpid())
    try:
        await wait_for(release)
    finally:
        client().rpush(stopped, os.getpid())
    return {"y": 1}
