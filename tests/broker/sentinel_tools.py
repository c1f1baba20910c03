"""Tools for the Sentinel test (served by a worker that finds its broker through Sentinel)."""

from __future__ import annotations

from typing import Any

from aethergraph import NodeContext, graph_fn, tool


@tool(outputs=["y"])
async def s_square(x: int, *, context: NodeContext) -> dict[str, Any]:
    await context.memory().record("square", {"x": x})  # the built-in memory, via Sentinel too
    return {"y": x * x}


@tool(outputs=["total"])
def s_total(ys: list[int]) -> dict[str, Any]:
    return {"total": sum(ys)}


@graph_fn(name="s_sum_of_squares", inputs=["n"], outputs=["total"])
async def s_sum_of_squares(n: int) -> dict[str, Any]:
    squares = [s_square(x=i)["y"] for i in range(n)]
    return {"total": s_total(ys=squares)["total"]}
