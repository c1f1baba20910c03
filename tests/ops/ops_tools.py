"""A test tool the broker test's worker serves next to workers/example_tools.py."""

from __future__ import annotations

import asyncio
from typing import Any

from aethergraph import NodeContext, graph_fn, tool


@tool(outputs=["slept"])
async def ops_hold(key: str, seconds: float, *, context: NodeContext) -> dict[str, Any]:
    """Says it started (kv ``key``), then holds its slot for ``seconds``."""
    await context.kv().set(key, True, ttl=600)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@graph_fn(name="ops_held", outputs=["slept"])
async def ops_held(key: str, seconds: float):
    return {"slept": ops_hold(key=key, seconds=seconds)["slept"]}
