"""``@tool(cache=True)``: an earlier outcome of the same call is reused across runs."""

from __future__ import annotations

from typing import Any

import pytest

from aethergraph import graph_fn, run, tool
from aethergraph.errors import ConfigurationError, ToolError
from aethergraph.scheduling.events import NodeEvent


def _counting_graph(name: str) -> tuple[Any, list[int], Any]:
    calls: list[int] = []

    @tool(outputs=["y"], cache=True, name=f"{name}_square")
    def square(x: int) -> dict[str, Any]:
        calls.append(x)
        return {"y": x * x}

    @tool(outputs=["total"], name=f"{name}_add")
    def add(values: list[int]) -> dict[str, Any]:
        return {"total": sum(values)}

    @graph_fn(name=name, outputs=["total"])
    async def body(n: int, offset: int = 0) -> Any:
        squares = [square(x=i + offset)["y"] for i in range(n)]
        return {"total": add(values=squares)["total"]}

    return body, calls, square


def test_a_second_run_reuses_the_cached_calls_and_says_so() -> None:
    body, calls, _ = _counting_graph("ca_reuse")
    assert run(body, n=4) == {"total": 14}
    assert sorted(calls) == [0, 1, 2, 3]

    events: list[NodeEvent] = []
    assert run(body, n=5, on_event=events.append) == {"total": 30}
    assert sorted(calls) == [0, 1, 2, 3, 4]  # only the new call ran
    graph = body.last_graph
    reused = {node.node_id: node.reused for node in graph}
    assert reused == {f"ca_reuse_square_{i}": "cached" for i in range(4)} | {
        "ca_reuse_square_4": None,
        "ca_reuse_add_0": None,  # not a caching tool
    }
    done = {e.node_id: e.reused for e in events if isinstance(e, NodeEvent) and e.type == "done"}
    assert done["ca_reuse_square_0"] == "cached"
    assert done["ca_reuse_square_4"] is None
    assert graph.to_dict()["nodes"][0]["reused"] == "cached"


def test_other_arguments_or_an_edited_tool_miss_the_cache() -> None:
    body, calls, _ = _counting_graph("ca_miss")
    run(body, n=2)
    run(body, n=2, offset=10)
    assert sorted(calls) == [0, 1, 10, 11]

    @tool(outputs=["y"], cache=True, name="ca_miss_square")
    def square(x: int) -> dict[str, Any]:  # the same name, edited: another source
        calls.append(-x)
        return {"y": -x}

    @graph_fn(name="ca_miss_edited", outputs=["y"])
    async def edited() -> Any:
        return {"y": square(x=0)["y"]}

    assert run(edited) == {"y": 0}
    assert calls[-1] == 0 and len(calls) == 5  # noqa: PT018  (ran: -0 == 0)


def test_failures_are_not_cached() -> None:
    attempts: list[int] = []

    @tool(cache=True)
    def ca_flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first call fails")
        return x

    @graph_fn(name="ca_flaky_graph")
    async def body() -> Any:
        return {"v": ca_flaky(x=3)}

    with pytest.raises(ToolError, match="first call fails"):
        run(body)
    assert run(body) == {"v": {"result": 3}}
    assert run(body) == {"v": {"result": 3}}
    assert attempts == [3, 3]  # the failure was not kept; the success was


def test_cache_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="cache must be True or False"):
        tool(cache="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cache_ttl must be a positive"):
        tool(cache=True, cache_ttl=0)
    with pytest.raises(ConfigurationError, match="cache_ttl must be seconds"):
        tool(cache=True, cache_ttl="1h")  # type: ignore[arg-type]
