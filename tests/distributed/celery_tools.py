"""Tools served by the test worker pools (imported by path in workers and in the tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from typing import Any

import redis
from pydantic import BaseModel

from aethergraph import NodeContext, Service, tool
from aethergraph.accepted_types import accept


class Point(BaseModel):
    x: float
    y: float


# d_echo(value: Any) passes Points through: its signature does not name them, so say so
accept(Point)


class Unlisted(BaseModel):
    """Imported by every worker, named by no tool's signature and not accepted: a message
    naming it is refused (decoding it would run its validators)."""

    v: int


def _redis() -> redis.Redis:
    # no socket timeout: redis-py 8 sets 5 s by default, shorter than the blocking pops here
    return redis.Redis.from_url(os.environ["AETHERGRAPH_BROKER_URL"], socket_timeout=None)


@tool(outputs=["y"])
def d_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["y"])
async def d_ainc(x: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"y": x + 1}


@tool(outputs=["total"])
def d_sum(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool(outputs=["out"])
def d_echo(value: Any) -> dict[str, Any]:
    return {"out": value}


@tool(outputs=["p", "when", "raw", "pair"])
def d_types(p: Point, when: dt.datetime, raw: bytes, pair: tuple[int, int]) -> dict[str, Any]:
    assert isinstance(p, Point)
    assert isinstance(when, dt.datetime)
    assert isinstance(raw, bytes)
    assert isinstance(pair, tuple)
    return {"p": Point(x=p.x * 2, y=p.y), "when": when + dt.timedelta(days=1), "raw": raw * 2,
            "pair": pair[::-1]}  # fmt: skip


@tool(outputs=["y"])
def d_boom(x: int = 0) -> dict[str, Any]:
    raise ValueError(f"remote boom {x}")


@tool(outputs=["y"], retries=3, retry_backoff=0.05, retry_jitter=False)
def d_flaky(key: str, fail_times: int) -> dict[str, Any]:
    n = int(_redis().incr(key))
    if n <= fail_times:
        raise ConnectionError(f"transient {n}")
    return {"y": n}


@tool(outputs=["y"], timeout=1.0)
async def d_slow_async() -> dict[str, Any]:
    await asyncio.sleep(30)
    return {"y": 1}


@tool(outputs=["blob"])
def d_big(n: int) -> dict[str, Any]:
    return {"blob": os.urandom(16) * (n // 16)}


@tool(outputs=["size", "head"])
def d_size(blob: bytes) -> dict[str, Any]:
    return {"size": len(blob), "head": blob[:16]}


@tool(outputs=["ids", "pid"])
async def d_whoami(*, context: NodeContext) -> dict[str, Any]:
    await context.channel().send_text(f"hello from {context.node_id}")
    context.logger().info("log line from %s", context.node_id)
    await context.memory().record("visit", {"node": context.node_id})
    return {"ids": [context.run_id, context.graph_id, context.node_id], "pid": os.getpid()}


@tool(outputs=["started", "pid", "calls"])
async def d_use_service(*, context: NodeContext) -> dict[str, Any]:
    counter = context.counter()
    calls = await counter.incr()
    return {"started": counter.started, "pid": counter.pid, "calls": calls}


@tool(outputs=["y"])
def d_block(key: str, release: str) -> dict[str, Any]:
    """Marks itself started, then waits (bounded) until the test releases it."""
    client = _redis()
    client.rpush(key, os.getpid())
    client.blpop([release], timeout=60)
    return {"y": 1}


@tool(outputs=["y"])
def d_die(key: str, times: int) -> dict[str, Any]:
    """Kills the process running it (SIGKILL, as the OOM killer does) the first ``times`` runs;
    each run is counted in the list ``key`` (its pid)."""
    client = _redis()
    runs = client.rpush(key, os.getpid())
    if runs <= times:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"y": runs}


class Counter(Service):
    """A per-worker-process service: proves workers build their own registries."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.pid = 0
        self.value = 0
        self.incr = self.critical()(self.incr)  # type: ignore[method-assign]

    async def start(self) -> None:
        self.started = True
        self.pid = os.getpid()

    async def incr(self) -> int:
        self.value += 1
        return self.value


def setup_services() -> None:
    from aethergraph import register_context_service

    register_context_service("counter", Counter())


@tool(outputs=["pid"], queue="special")
def d_special() -> dict[str, Any]:
    """Routed to the ``special`` queue: only a pool started with ``-Q special`` runs it."""
    return {"pid": os.getpid()}


@tool(outputs=["y"])
def d_fail_if(x: int, bad: list[int]) -> dict[str, Any]:
    if x in bad:
        raise ValueError(f"bad input {x}")
    return {"y": x}


# -- worker runtime tests (test_worker_runtime.py) --------------------------------------------


class _Opaque:
    """No codec support: outputs holding one cannot be encoded."""


@tool(outputs=["y"], retries=3, retry_backoff=0.01, retry_jitter=False)
def d_unencodable(key: str) -> dict[str, Any]:
    """Counts its runs, then returns an output no codec can encode (a deterministic failure)."""
    _redis().incr(key)
    return {"y": _Opaque()}


@tool(outputs=["pid"])
def d_pid() -> dict[str, Any]:
    return {"pid": os.getpid()}


@tool(outputs=["start", "end"])
async def d_interval(seconds: float = 0.2) -> dict[str, Any]:
    """Records when it ran (the worker's wall clock), to count how many ran at once."""
    start = time.time()
    await asyncio.sleep(seconds)
    return {"start": start, "end": time.time()}


@tool(outputs=["y"])
def d_sleep(i: int, seconds: float) -> dict[str, Any]:
    """A sync tool that takes ``seconds`` (long enough for a started notice)."""
    time.sleep(seconds)
    return {"y": i}
