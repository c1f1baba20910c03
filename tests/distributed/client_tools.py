"""Tools for the client-side executor tests (served by the test pools next to celery_tools)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from aethergraph import NodeContext, tool


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["AETHERGRAPH_BROKER_URL"])


@tool(outputs=["y"])
def c_nap(seconds: float, i: int = 0) -> dict[str, Any]:
    """Sleeps: a node whose run time is known."""
    time.sleep(seconds)
    return {"y": i}


@tool(outputs=["y"])
def c_started_nap(key: str, seconds: float, i: int = 0) -> dict[str, Any]:
    """Says it started (its pid onto the list ``key``), then sleeps without Redis.

    The test kills the broker as soon as its ``BLPOP`` sees the pid. Redis writes the two
    replies (the test's pop, this push) in the same event-loop turn, in either order, so this
    push's reply may never come although the push was applied: that is no failure of the node.
    """
    try:
        _redis().rpush(key, os.getpid())
    except redis.ConnectionError:
        pass  # applied (the test saw it) or not (the test times out saying so)
    time.sleep(seconds)
    return {"y": i}


@tool(outputs=["y"])
def c_count(key: str, i: int, seconds: float = 0.05) -> dict[str, Any]:
    """Counts its executions in Redis, then takes a moment."""
    _redis().incr(key)
    time.sleep(seconds)
    return {"y": i}


@tool(outputs=["value"])
async def c_kv_get(key: str, *, context: NodeContext) -> dict[str, Any]:
    """Reads the shared kv on the worker."""
    return {"value": await context.kv().get(key)}


@tool(outputs=["size"])
def c_len(blob: bytes) -> dict[str, Any]:
    return {"size": len(blob)}
