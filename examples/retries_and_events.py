"""Retries with backoff, a timeout, a concurrency limit and a live progress listener.

python examples/retries_and_events.py
"""

from __future__ import annotations

import asyncio
import random

from aethergraph import NodeEvent, ToolError, graph_fn, run, tool

attempts: dict[int, int] = {}


@tool(outputs=["value"], retries=3, retry_backoff=0.01)
async def flaky_measurement(i: int) -> dict:
    """Fails on its first attempt for every third input (a transient instrument error)."""
    attempts[i] = attempts.get(i, 0) + 1
    if i % 3 == 0 and attempts[i] == 1:
        raise ConnectionError(f"instrument {i} busy")
    await asyncio.sleep(random.uniform(0, 0.01))
    return {"value": i * i}


@tool(outputs=["value"], timeout=0.1)
async def too_slow() -> dict:
    await asyncio.sleep(10)
    return {"value": 0}


@graph_fn(name="measure_all", outputs=["total"])
async def measure_all(n: int):
    values = [flaky_measurement(i=i)["value"] for i in range(n)]
    return {"total": sum(values)}  # sum() of refs waits for each


@graph_fn(name="with_timeout", outputs=["value"])
async def with_timeout():
    return too_slow()["value"]


def progress(event: object) -> None:
    if isinstance(event, NodeEvent) and event.type in ("retrying", "done", "failed"):
        print(f"{event.node_id:<22} {event.type:<9} attempt {event.attempt}")


if __name__ == "__main__":
    result = run(measure_all, n=9, max_concurrency=4, on_event=progress)
    print(result)
    assert result == {"total": sum(i * i for i in range(9))}
    try:
        run(with_timeout)
    except ToolError as exc:
        print("as expected:", exc)
        assert exc.exc_type.endswith("NodeTimeoutError")
    else:
        raise AssertionError("the timeout did not fire")
