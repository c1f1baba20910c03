"""Tests of ``@graph_fn`` / ``GraphFunction``: construction, input validation, entry points,
sync bodies, nesting, errors raised by the body, run metadata and concurrent runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aethergraph import (
    ConfigurationError,
    GraphFunction,
    GraphInputError,
    NodeContext,
    NodeHandle,
    NodeStatus,
    OutputContractError,
    TaskGraph,
    current_registry,
    graph_fn,
    run,
    run_async,
    tool,
)
from aethergraph.services.builtins.memory import MemoryEvent

# -- tools ------------------------------------------------------------------------------------


@tool(outputs=["y"])
def gfn_double(x: int) -> dict[str, Any]:
    return {"y": x * 2}


@tool(outputs=["y"])
async def gfn_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["total"])
def gfn_sum(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool
async def gfn_block_forever() -> dict[str, Any]:
    await asyncio.Event().wait()  # only ever ends by cancellation
    return {"never": True}


@tool
async def gfn_remember(kind: str, value: Any, *, context: NodeContext) -> dict[str, Any]:
    event = await context.memory().record(kind, {"value": value})
    return {"seq": event.seq}


# -- construction -----------------------------------------------------------------------------


def test_decorator_builds_graph_function() -> None:
    @graph_fn(name="gfn_example", inputs=["x"], outputs=["y"], version="1.2.0")
    async def example(x: int, *, context: NodeContext) -> dict[str, Any]:
        """Doc of example."""
        return {"y": x + 1}

    assert isinstance(example, GraphFunction)
    assert example.graph_id == "gfn_example"
    assert example.name == "gfn_example"
    assert example.inputs == ["x"]
    assert example.outputs == ["y"]
    assert example.version == "1.2.0"
    assert example.wants_context is True
    assert example.last_graph is None
    assert example.last_context is None
    assert example.last_memory_snapshot is None
    assert example.__doc__ == "Doc of example."
    assert current_registry().get(nspace="graphfn", name="gfn_example") is example


def test_defaults() -> None:
    @graph_fn(name="gfn_defaults")
    async def body(x: int) -> Any:
        return {"x": x}

    assert body.inputs == []
    assert body.outputs == []
    assert body.version == "0.1.0"
    assert body.wants_context is False


def test_graph_function_constructor_directly() -> None:
    async def fn(a: int, b: int = 2) -> Any:
        return {"s": a + b}

    gf = GraphFunction("gfn_direct", fn, inputs=["a", "b"], outputs=["s"], version="3.0.0")
    assert (gf.name, gf.graph_id, gf.version) == ("gfn_direct", "gfn_direct", "3.0.0")
    assert gf.fn is fn
    assert run(gf, a=1) == {"s": 3}
    assert isinstance(gf.last_graph, TaskGraph)


def test_bare_decorator_without_name_is_rejected() -> None:
    async def body() -> Any:
        return {}

    with pytest.raises(ConfigurationError, match="name"):
        graph_fn(body)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", None, 5])
def test_invalid_name_is_rejected(name: Any) -> None:
    with pytest.raises(ConfigurationError):
        graph_fn(name=name)


def test_outputs_as_string_is_rejected() -> None:
    async def body() -> Any:
        return {}

    with pytest.raises(ConfigurationError, match="outputs"):
        graph_fn(name="gfn_bad_outputs", outputs="y")(body)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="inputs"):
        graph_fn(name="gfn_bad_inputs", inputs="x")(body)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        GraphFunction("gfn_bad_outputs_direct", body, outputs="y")  # type: ignore[arg-type]


def test_declared_inputs_must_be_in_signature() -> None:
    async def body(x: int) -> Any:
        return {"x": x}

    with pytest.raises(ConfigurationError, match="'z'"):
        graph_fn(name="gfn_undeclared_input", inputs=["x", "z"])(body)

    async def with_kwargs(x: int, **rest: Any) -> Any:
        return {"x": x}

    gf = graph_fn(name="gfn_declared_via_kwargs", inputs=["x", "z"])(with_kwargs)
    assert gf.inputs == ["x", "z"]


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the point is the base class
        graph_fn(name="gfn_value_error", outputs="y")(lambda: None)  # type: ignore[arg-type]


def test_agent_registration() -> None:
    @graph_fn(name="gfn_agent_graph", version="0.3.0", agent="gfn_agent")
    async def body() -> Any:
        return {}

    reg = current_registry()
    assert reg.get(nspace="graphfn", name="gfn_agent_graph", version="0.3.0") is body
    assert reg.get(nspace="agent", name="gfn_agent") is body
    with pytest.raises(ConfigurationError):
        graph_fn(name="gfn_bad_agent", agent="")


# -- input validation -------------------------------------------------------------------------


@graph_fn(name="gfn_inputs", inputs=["a", "b"], outputs=["s"])
async def gfn_inputs(a: int, b: int = 10, *, context: NodeContext) -> dict[str, Any]:
    return {"s": gfn_sum(xs=[a, b])["total"]}


def test_valid_inputs_run() -> None:
    assert run(gfn_inputs, a=1) == {"s": 11}
    assert run(gfn_inputs, a=1, b=2) == {"s": 3}


def test_unknown_input_is_rejected() -> None:
    with pytest.raises(GraphInputError, match="'c'") as info:
        run(gfn_inputs, a=1, c=3)
    assert isinstance(info.value, TypeError)
    assert "gfn_inputs" in str(info.value)


def test_missing_required_input_is_rejected() -> None:
    with pytest.raises(GraphInputError, match="'a'") as info:
        run(gfn_inputs, b=3)
    assert "gfn_inputs" in str(info.value)


def test_missing_input_rejected_before_body_runs() -> None:
    calls: list[int] = []

    @graph_fn(name="gfn_no_body_on_bad_input")
    async def body(x: int) -> Any:
        calls.append(x)
        return {}

    with pytest.raises(GraphInputError):
        run(body)
    with pytest.raises(GraphInputError):
        asyncio.run(run_async(body, y=1))
    assert calls == []
    assert body.last_graph is None


def test_positional_inputs() -> None:
    async def main() -> Any:
        return await gfn_inputs(4, 5)

    assert asyncio.run(main()) == {"s": 9}

    with pytest.raises(GraphInputError, match="positional"):
        asyncio.run(gfn_inputs(1, 2, 3))
    with pytest.raises(GraphInputError, match="'a'"):
        asyncio.run(gfn_inputs(1, a=2))
    # run() takes inputs by name only
    with pytest.raises(TypeError):
        run(gfn_inputs, 1)  # type: ignore[misc]


def test_var_keyword_inputs_accepted() -> None:
    @graph_fn(name="gfn_var_kw")
    async def body(x: int, **rest: Any) -> Any:
        return {"x": x, "rest": rest}

    assert run(body, x=1, foo="bar", n=2) == {"x": 1, "rest": {"foo": "bar", "n": 2}}
    assert body.last_graph.inputs == {"x": 1, "foo": "bar", "n": 2}


def test_context_is_not_an_input() -> None:
    @graph_fn(name="gfn_ctx_not_input")
    async def body(*, context: NodeContext) -> Any:
        return {"graph_id": context.graph_id}

    fake = NodeContext(run_id="x", graph_id="fake", node_id="n")
    assert run(body, context=fake) == {"graph_id": "gfn_ctx_not_input"}
    assert body.last_graph.inputs == {}


# -- entry points -----------------------------------------------------------------------------


@graph_fn(name="gfn_chain", inputs=["x"], outputs=["y"])
async def gfn_chain(x: int) -> dict[str, Any]:
    a = gfn_double(x=x)
    b = gfn_inc(x=a["y"])
    return {"y": b["y"]}


def test_run_sync() -> None:
    assert run(gfn_chain, x=5) == {"y": 11}
    assert [n.tool for n in gfn_chain.last_graph] == ["gfn_double", "gfn_inc"]


def test_await_graph_function_inside_asyncio_run() -> None:
    async def main() -> dict[str, Any]:
        return await gfn_chain(x=3)

    assert asyncio.run(main()) == {"y": 7}
    assert len(gfn_chain.last_graph) == 2


def test_run_async() -> None:
    async def main() -> dict[str, Any]:
        return await run_async(gfn_chain, x=10)

    assert asyncio.run(main()) == {"y": 21}
    assert gfn_chain.last_graph.status_counts()["done"] == 2


def test_run_async_with_explicit_run_id() -> None:
    out = asyncio.run(run_async(gfn_chain, run_id="gfn-fixed-run-id", x=1))
    assert out == {"y": 3}
    assert gfn_chain.last_graph.run_id == "gfn-fixed-run-id"
    assert gfn_chain.last_context.run_id == "gfn-fixed-run-id"


def test_run_rejects_non_graph_function() -> None:
    async def not_a_graph() -> Any:
        return {}

    with pytest.raises(ConfigurationError, match="graph_fn"):
        run(not_a_graph)  # type: ignore[arg-type]


def test_sync_body() -> None:
    @graph_fn(name="gfn_sync_body", outputs=["y", "plain"])
    def body(x: int) -> dict[str, Any]:
        a = gfn_double(x=x)
        b = gfn_inc(x=a.y)
        return {"y": b["y"], "plain": x * 100}

    assert not asyncio.iscoroutinefunction(body.fn)
    assert run(body, x=2) == {"y": 5, "plain": 200}
    assert [n.status for n in body.last_graph] == [NodeStatus.DONE, NodeStatus.DONE]
    assert asyncio.run(run_async(body, x=3)) == {"y": 7, "plain": 300}


def test_sync_body_with_context_and_transparent_ref_value() -> None:
    @graph_fn(name="gfn_sync_ctx")
    def body(x: int, context: NodeContext) -> dict[str, Any]:
        a = gfn_double(x=x)
        text = f"doubled={a['y']}"  # waits for the node transparently
        return {"text": text, "graph_id": context.graph_id}

    assert run(body, x=21) == {"text": "doubled=42", "graph_id": "gfn_sync_ctx"}


# -- output contract --------------------------------------------------------------------------


def test_output_contract_of_graph() -> None:
    @graph_fn(name="gfn_outputs_order", outputs=["b", "a"])
    async def ordered() -> Any:
        return {"a": 1, "b": gfn_double(x=1)["y"], "extra": 3}

    assert list(run(ordered)) == ["b", "a"]
    assert run(ordered) == {"b": 2, "a": 1}

    @graph_fn(name="gfn_single_literal", outputs=["only"])
    async def single() -> Any:
        return gfn_double(x=4)["y"]

    assert run(single) == {"only": 8}

    @graph_fn(name="gfn_handle_result")
    async def whole() -> Any:
        return gfn_double(x=4)

    assert run(whole) == {"y": 8}

    @graph_fn(name="gfn_missing_output", outputs=["a", "b"])
    async def missing() -> Any:
        return {"a": 1}

    with pytest.raises(OutputContractError, match="'b'") as info:
        run(missing)
    assert isinstance(info.value, ValueError)


# -- nested graph functions -------------------------------------------------------------------


@graph_fn(name="gfn_inner", inputs=["x"], outputs=["y"])
async def gfn_inner(x: int) -> dict[str, Any]:
    return {"y": gfn_double(x=x)["y"]}


def test_nested_graph_function_runs_inline() -> None:
    seen: dict[str, Any] = {}

    @graph_fn(name="gfn_outer", outputs=["z"])
    async def outer(x: int, *, context: NodeContext) -> dict[str, Any]:
        inner_out = await gfn_inner(x=x)
        seen["inner_out"] = inner_out
        seen["run_id"] = context.run_id
        return {"z": gfn_inc(x=inner_out["y"])["y"]}

    inner_graph_before = gfn_inner.last_graph
    assert run(outer, x=5) == {"z": 11}
    assert seen["inner_out"] == {"y": 10}
    g = outer.last_graph
    assert [n.tool for n in g] == ["gfn_double", "gfn_inc"]
    assert all(n.status is NodeStatus.DONE for n in g)
    assert g.run_id == seen["run_id"]
    # the inner graph did not start a run of its own
    assert gfn_inner.last_graph is inner_graph_before


def test_nested_graph_function_handles_wire_edges() -> None:
    @graph_fn(name="gfn_inner_handle")
    async def inner(x: int) -> Any:
        return {"h": gfn_double(x=x)}

    @graph_fn(name="gfn_outer_handle")
    async def outer() -> Any:
        first = gfn_inc(x=1)
        mid = await inner(x=await first["y"])
        return gfn_sum(xs=[mid["h"]["y"], first["y"]])

    assert run(outer) == {"total": 6}
    g = outer.last_graph
    assert [n.tool for n in g] == ["gfn_inc", "gfn_double", "gfn_sum"]
    assert g["gfn_sum_0"].deps == ("gfn_inc_0",)


# -- errors from the body ---------------------------------------------------------------------


class BodyError(Exception):
    pass


def test_body_exception_propagates_and_nodes_settle() -> None:
    marker = BodyError("body failed on purpose")
    handles: dict[str, NodeHandle] = {}

    @graph_fn(name="gfn_body_raises")
    async def body() -> Any:
        done = gfn_double(x=1)
        await done  # certainly finished before the body raises
        handles["done"] = done
        handles["blocked"] = gfn_block_forever()  # dispatched, never finishes by itself
        handles["waiting"] = gfn_inc(x=handles["blocked"]["never"])  # waits on the blocked one
        raise marker

    with pytest.raises(BodyError) as info:
        run(body)
    assert info.value is marker
    g = body.last_graph
    assert len(g) == 3
    statuses = {n.node_id: n.status for n in g}
    assert statuses[handles["done"].node_id] is NodeStatus.DONE
    assert statuses[handles["blocked"].node_id] is NodeStatus.CANCELLED
    assert statuses[handles["waiting"].node_id] is NodeStatus.CANCELLED
    for node in g:
        assert node.status in (NodeStatus.DONE, NodeStatus.CANCELLED)
        assert node.status.finished
        assert node.finished_at is not None
    counts = g.status_counts()
    assert counts["pending"] == 0
    assert counts["running"] == 0


def test_body_exception_propagates_through_await_and_run_async() -> None:
    @graph_fn(name="gfn_body_raises_async")
    async def body(x: int) -> Any:
        gfn_block_forever()
        raise KeyError(f"missing {x}")

    async def main() -> Any:
        return await body(x=7)

    with pytest.raises(KeyError, match="missing 7"):
        asyncio.run(main())
    with pytest.raises(KeyError, match="missing 8"):
        asyncio.run(run_async(body, x=8))
    assert all(n.status is NodeStatus.CANCELLED for n in body.last_graph)


def test_sync_body_exception_propagates() -> None:
    @graph_fn(name="gfn_sync_body_raises")
    def body() -> Any:
        gfn_double(x=1)
        raise RuntimeError("sync body failed")

    with pytest.raises(RuntimeError, match="sync body failed"):
        run(body)
    for node in body.last_graph:
        assert node.status in (NodeStatus.DONE, NodeStatus.CANCELLED)


# -- run metadata -----------------------------------------------------------------------------


def test_last_context_has_run_and_graph_ids() -> None:
    captured: dict[str, Any] = {}

    @graph_fn(name="gfn_last_ctx")
    async def body(*, context: NodeContext) -> Any:
        captured["ctx"] = context
        return {"run_id": context.run_id}

    out = run(body)
    ctx = body.last_context
    assert isinstance(ctx, NodeContext)
    assert ctx is captured["ctx"]
    assert ctx.run_id == out["run_id"] == body.last_graph.run_id
    assert ctx.graph_id == "gfn_last_ctx"
    second = run(body)
    assert second["run_id"] != out["run_id"]
    assert body.last_context.run_id == second["run_id"]


def test_last_memory_snapshot_holds_events_recorded_by_tools() -> None:
    @graph_fn(name="gfn_memory")
    async def body() -> Any:
        first = gfn_remember(kind="observation", value=1)
        second = gfn_remember(kind="decision", value=await first["seq"])
        return {"first": first["seq"], "second": second["seq"]}

    out = run(body)
    assert out == {"first": 1, "second": 2}
    snapshot = body.last_memory_snapshot
    assert isinstance(snapshot, list)
    assert all(isinstance(e, MemoryEvent) for e in snapshot)
    run_id = body.last_graph.run_id
    assert [(e.kind, e.data, e.seq) for e in snapshot] == [
        ("observation", {"value": 1}, 1),
        ("decision", {"value": 1}, 2),
    ]
    assert {e.run_id for e in snapshot} == {run_id}
    assert {e.graph_id for e in snapshot} == {"gfn_memory"}
    assert [e.node_id for e in snapshot] == ["gfn_remember_0", "gfn_remember_1"]

    # a new run gets its own, fresh log
    run(body)
    assert body.last_graph.run_id != run_id
    assert [e.seq for e in body.last_memory_snapshot] == [1, 2]


def test_memory_snapshot_of_run_without_events_is_empty() -> None:
    @graph_fn(name="gfn_no_memory")
    async def body() -> Any:
        return gfn_double(x=1)

    run(body)
    assert body.last_memory_snapshot == []


# -- concurrent runs --------------------------------------------------------------------------


@graph_fn(name="gfn_concurrent", outputs=["y", "run_id"])
async def gfn_concurrent(x: int, *, context: NodeContext) -> dict[str, Any]:
    a = gfn_double(x=x)
    b = gfn_inc(x=a["y"])
    return {"y": b["y"], "run_id": context.run_id}


def test_concurrent_runs_of_the_same_graph() -> None:
    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(gfn_concurrent(x=i) for i in range(5)))

    results = asyncio.run(main())
    assert [r["y"] for r in results] == [2 * i + 1 for i in range(5)]
    run_ids = [r["run_id"] for r in results]
    assert len(set(run_ids)) == 5
    assert all(isinstance(r, str) and r for r in run_ids)
    g = gfn_concurrent.last_graph
    assert g.run_id in run_ids
    assert len(g) == 2
    assert all(n.status is NodeStatus.DONE for n in g)


def test_concurrent_runs_with_run_async() -> None:
    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(run_async(gfn_concurrent, x=10 + i) for i in range(5)))

    results = asyncio.run(main())
    assert [r["y"] for r in results] == [2 * (10 + i) + 1 for i in range(5)]
    assert len({r["run_id"] for r in results}) == 5
