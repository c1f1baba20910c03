"""The tools of the executor conformance suite, and the signals tests and tools exchange.

They live at module level in this one file because Celery workers import it by path
(``aethergraph worker --tools .../conformance_tools.py``) and serve exactly the tools it defines:
a tool defined inside a test function would exist only in the test process.

Coordination between a test and its tools (barriers, counters, "started" / "stopped" signals, which
tools ran, the concurrency observed) goes through :class:`Signals`: lists and counters under keys
that are unique per test and passed to the tools as arguments. Two implementations, one interface:

* :class:`MemorySignals` for the in-process executors: tools run on the test's own runtime loop
  or its threads, so a lock and a condition variable are all they need, and that lane runs with
  no Redis at all (the StubBroker idea of dramatiq);
* :class:`RedisSignals` for worker processes, which share nothing with the test but Redis. The URL
  comes from the environment variable ``COORDINATION_ENV``, set by the test session in
  ``os.environ`` and handed to the workers.

A tool picks the in-memory signals when the test installed them in this process
(:func:`in_memory_signals`), else Redis. Every wait is bounded, and a tool that waits for a
"release" can always be let go by the test.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from aethergraph import tool

COORDINATION_ENV = "AETHERGRAPH_CONFORMANCE_REDIS"
WAIT = 30.0  # seconds a tool waits at most for a signal from the test or another tool


class Signals(ABC):
    """Lists and counters shared by a test and its tools (a tiny subset of Redis)."""

    @abstractmethod
    def push(self, key: str, *values: object) -> int:
        """Append ``values`` (as str) to the list ``key``; its new length."""

    @abstractmethod
    def pop(self, key: str, within: float = WAIT) -> str | None:
        """Remove and return the first item of ``key``, waiting at most ``within`` seconds."""

    @abstractmethod
    def items(self, key: str) -> list[str]:
        """The whole list ``key``, oldest first."""

    @abstractmethod
    def add(self, key: str, amount: int) -> int:
        """Add ``amount`` to the counter ``key`` (0 if absent); its new value."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The counter ``key`` as str, or None if absent."""

    def close(self) -> None:
        """Release connections (nothing to release by default)."""


class MemorySignals(Signals):
    """Signals in this process's memory: one condition variable guards every list and counter."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._lists: dict[str, list[str]] = {}
        self._counters: dict[str, int] = {}

    def push(self, key: str, *values: object) -> int:
        with self._changed:
            items = self._lists.setdefault(key, [])
            items.extend(str(v) for v in values)
            self._changed.notify_all()
            return len(items)

    def pop(self, key: str, within: float = WAIT) -> str | None:
        deadline = time.monotonic() + within
        with self._changed:
            while not self._lists.get(key):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self._lists[key].pop(0)

    def items(self, key: str) -> list[str]:
        with self._changed:
            return list(self._lists.get(key, ()))

    def add(self, key: str, amount: int) -> int:
        with self._changed:
            value = self._counters[key] = self._counters.get(key, 0) + amount
            return value

    def get(self, key: str) -> str | None:
        with self._changed:
            value = self._counters.get(key)
        return None if value is None else str(value)


class RedisSignals(Signals):
    """Signals in Redis, for tools that run in other processes (Celery workers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # quick commands only; a blocking pop opens its own connection (see pop)
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def push(self, key: str, *values: object) -> int:
        return int(self.client.rpush(key, *(str(v) for v in values)))

    def pop(self, key: str, within: float = WAIT) -> str | None:
        # Its own connection: a BLPOP holds it for up to ``within`` seconds, and several tools of
        # one worker process may wait at once.
        conn = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=within + 5)
        try:
            item = conn.blpop([key], timeout=within)
        finally:
            conn.close()
        return None if item is None else str(item[1])

    def items(self, key: str) -> list[str]:
        return [str(v) for v in self.client.lrange(key, 0, -1)]

    def add(self, key: str, amount: int) -> int:
        return int(self.client.incrby(key, amount))

    def get(self, key: str) -> str | None:
        value = self.client.get(key)
        return None if value is None else str(value)

    def close(self) -> None:
        self.client.close()


_installed: MemorySignals | None = None
_redis_signals: dict[tuple[int, str], RedisSignals] = {}


@contextmanager
def in_memory_signals() -> Iterator[MemorySignals]:
    """Make tools in this process signal through a fresh :class:`MemorySignals` meanwhile."""
    global _installed
    previous, _installed = _installed, MemorySignals()
    try:
        yield _installed
    finally:
        _installed = previous


def signals() -> Signals:
    """The signals tools use: the test's in-memory ones if installed here, else Redis."""
    if _installed is not None:
        return _installed
    url = os.environ.get(COORDINATION_ENV)
    if not url:
        raise RuntimeError(
            f"{COORDINATION_ENV} is not set and no in-memory signals are installed: the "
            "conformance tools ran outside the conformance fixtures"
        )
    key = (os.getpid(), url)  # a forked pool process must not reuse its parent's sockets
    found = _redis_signals.get(key)
    if found is None:
        found = _redis_signals[key] = RedisSignals(url)
    return found


async def wait_for(channel: Signals, key: str, within: float = WAIT) -> str | None:
    """``channel.pop(key)`` for async tools, always cancellable.

    The blocking pop runs on a thread: cancelling the awaiting tool is then always delivered (an
    asyncio Redis client can swallow a cancellation that lands while it connects). A thread left
    behind ends when the test releases the key in its cleanup, or after ``within`` seconds.
    """
    return await asyncio.to_thread(channel.pop, key, within)


class Coordination:
    """The test's side of the signals: key names unique to one test, bounded waits."""

    def __init__(self, channel: Signals, namespace: str) -> None:
        self.signals = channel
        self.namespace = namespace

    def key(self, name: str) -> str:
        """The key ``name`` of this test (``namespace`` is unique per test)."""
        return f"{self.namespace}:{name}"

    def wait(self, name: str, within: float = WAIT) -> str | None:
        """Pop one item pushed onto ``name``, waiting at most ``within`` seconds."""
        return self.signals.pop(self.key(name), within)

    def push(self, name: str, *values: object) -> None:
        self.signals.push(self.key(name), *(values or ("go",)))

    def items(self, name: str) -> list[str]:
        return self.signals.items(self.key(name))

    def close(self) -> None:
        self.signals.close()


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
    signals().push(log, tag)
    return {"y": tag}


@tool(outputs=["y"])
async def cf_boom(x: int = 0) -> dict[str, Any]:
    raise ValueError(f"boom {x}")


# -- concurrency -------------------------------------------------------------------------------


@tool(outputs=["ok"])
async def cf_meet(i: int, arrivals: str, release: str, width: int) -> dict[str, Any]:
    """A barrier: passes only once ``width`` calls are running at the same time."""
    channel = signals()
    arrived = channel.add(arrivals, 1)
    if arrived == width:  # the last one to arrive lets everybody through
        channel.push(release, *(["go"] * width))
    if await wait_for(channel, release) is None:
        seen = channel.get(arrivals)
        raise TimeoutError(f"barrier: only {seen} of {width} nodes ran at the same time")
    return {"ok": i}


@tool(outputs=["y"])
async def cf_slot(i: int, running: str, observed: str) -> dict[str, Any]:
    """Records how many calls run at once (``running``) into the list ``observed``."""
    channel = signals()
    now = channel.add(running, 1)
    channel.push(observed, now)
    try:
        # The tool's "work": it keeps its slot a moment, so that a call started beyond the limit
        # would overlap with it and be observed (not a synchronization: nothing waits on it).
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
    finally:
        channel.add(running, -1)
    return {"y": i}


# -- failures ----------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_forever(started: str, release: str) -> dict[str, Any]:
    """Signals ``started``, then runs until cancelled (or released by the test's cleanup)."""
    channel = signals()
    channel.push(started, os.getpid())
    await wait_for(channel, release)
    return {"y": 1}


@tool(outputs=["y"])
async def cf_boom_later(started: str) -> dict[str, Any]:
    """Fails once ``started`` was signalled (by a node running next to it)."""
    await wait_for(signals(), started)
    raise RuntimeError("late boom")


@tool(outputs=["y"], retries=3, retry_backoff=0.01, retry_jitter=False)
def cf_flaky(x: int, calls: str) -> dict[str, Any]:
    """Fails its first two calls (counted in the list ``calls``)."""
    n = signals().push(calls, x)
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
    channel = signals()
    try:
        await wait_for(channel, release)
    finally:
        channel.push(stopped, os.getpid())
    return {"y": 1}


@tool(outputs=["y"], timeout=0.2)
def cf_slow_sync(release: str) -> dict[str, Any]:
    """A sync tool that runs past its timeout (until the test releases it)."""
    signals().pop(release)
    return {"y": 1}


# -- cancellation ------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_wait_forever(x: int, started: str, stopped: str, release: str) -> dict[str, Any]:
    """Signals ``started``, runs until cancelled, and signals ``stopped`` from its ``finally``."""
    channel = signals()
    channel.push(started, os.getpid())
    try:
        await wait_for(channel, release)
    finally:
        channel.push(stopped, os.getpid())
    return {"y": x}


@tool(outputs=["y"])
async def cf_block(started: str, stopped: str, release: str) -> dict[str, Any]:
    """Like ``cf_wait_forever``, without an input."""
    channel = signals()
    channel.push(started, os.getpid())
    try:
        await wait_for(channel, release)
    finally:
        channel.push(stopped, os.getpid())
    return {"y": 1}
