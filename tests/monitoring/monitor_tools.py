"""Tools for the monitoring tests: ones that succeed, fail, fail once, and a fan-out."""

from __future__ import annotations

import time
from typing import Any

from aethergraph import NodeContext, graph_fn, tool


@tool(outputs=["y"])
def m_square(x: int) -> dict[str, Any]:
    return {"y": x * x}


@tool(outputs=["y"])
def m_explode(x: int) -> dict[str, Any]:
    raise ValueError(f"m_explode refuses {x}")  # the line Flower's traceback must show


@tool(outputs=["y"], retries=1)
def m_flaky(x: int, *, context: NodeContext) -> dict[str, Any]:
    if context.attempt == 1:
        raise RuntimeError("m_flaky fails its first attempt")
    return {"y": x}


@tool(outputs=["y"])
def m_sometimes(i: int) -> dict[str, Any]:
    if i % 16 == 5:
        raise KeyError(f"m_sometimes has no entry {i}")
    return {"y": i}


@tool(outputs=["y"])
def m_slow(x: int, seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"y": x}


@graph_fn(name="m_fails", inputs=["x"], outputs=["y"])
async def m_fails(x: int) -> dict[str, Any]:
    return {"y": m_explode(x=x)["y"]}


@graph_fn(name="m_retries", inputs=["x"], outputs=["y"])
async def m_retries(x: int) -> dict[str, Any]:
    return {"y": m_flaky(x=x)["y"]}


@graph_fn(name="m_fan", inputs=["n"], outputs=["ys"])
async def m_fan(n: int) -> dict[str, Any]:
    return {"ys": [m_sometimes(i=i)["y"] for i in range(n)]}


@graph_fn(name="m_squares", inputs=["n"], outputs=["ys"])
async def m_squares(n: int) -> dict[str, Any]:
    return {"ys": [m_square(x=i)["y"] for i in range(n)]}


@graph_fn(name="m_wait", inputs=["n", "seconds"], outputs=["ys"])
async def m_wait(n: int, seconds: float) -> dict[str, Any]:
    return {"ys": [m_slow(x=i, seconds=seconds)["y"] for i in range(n)]}
