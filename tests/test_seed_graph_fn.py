"""The ``@graph_fn`` seed document (Graph Function API), example by example, plus its contracts.

Every code block of the seed runs here as written (only the imports are the package's real
ones); the assertions pin down what the seed promises about ``GraphFunction`` attributes,
registration, context injection, tools vs plain callables, and the output contract.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from aethergraph import (
    GraphFunction,
    NodeContext,
    NodeHandle,
    TaskGraph,
    current_registry,
    graph_fn,
    run,
    run_async,
    tool,
)
from aethergraph.services.builtins.channel import RecordingChannelBackend
from aethergraph.services.runtime.registry import current_services


@pytest.fixture
def recording_channel() -> Iterator[RecordingChannelBackend]:
    """Swap the built-in channel backend for a recording one; restore it afterwards."""
    services = current_services()
    previous = services.builtins.channel
    recorder = RecordingChannelBackend()
    services.configure_builtins(channel=recorder)
    try:
        yield recorder
    finally:
        services.configure_builtins(channel=previous)


def _node_tools(gf: GraphFunction) -> list[str]:
    graph = gf.last_graph
    assert isinstance(graph, TaskGraph)
    return sorted(node.tool for node in graph.nodes.values())


# ---------------------------------------------------------------------------------------------
# §1 GraphFunction overview
# ---------------------------------------------------------------------------------------------


def test_graph_function_constructor_sets_documented_attributes() -> None:
    async def body(a: int, b: int) -> dict[str, int]:
        return {"s": a + b}

    gf = GraphFunction("sgf_direct", body, inputs=["a", "b"], outputs=["s"], version="2.0.0")

    assert gf.graph_id == "sgf_direct"
    assert gf.name == "sgf_direct"
    assert gf.fn is body
    assert gf.inputs == ["a", "b"]
    assert gf.outputs == ["s"]
    assert gf.version == "2.0.0"
    assert gf.registry_key is None
    assert gf.last_graph is None
    assert gf.last_context is None
    assert gf.last_memory_snapshot is None


def test_graph_function_constructor_defaults() -> None:
    def body() -> None:
        return None

    gf = GraphFunction("sgf_defaults", body)

    assert gf.inputs == []
    assert gf.outputs == []
    assert gf.version == "0.1.0"
    assert gf.graph_id == gf.name == "sgf_defaults"


def test_graph_function_built_directly_runs() -> None:
    async def body(a: int, b: int) -> dict[str, int]:
        return {"s": a + b}

    gf = GraphFunction("sgf_direct_run", body, inputs=["a", "b"], outputs=["s"])

    assert run(gf, a=2, b=3) == {"s": 5}
    assert isinstance(gf.last_graph, TaskGraph)


# ---------------------------------------------------------------------------------------------
# §2 the decorator
# ---------------------------------------------------------------------------------------------


def _define_doc_example_decl() -> GraphFunction:
    # fmt: off
    # -- verbatim from the seed (§2 "What the decorator returns") --
    @graph_fn(name="example", inputs=["x"], outputs=["y"])
    async def example(x: int, *, context: NodeContext):
        ...

    # `example` is now a GraphFunction
    assert isinstance(example, GraphFunction)
    # -- end of seed code --
    # fmt: on
    return example


def test_decorator_returns_graph_function_with_declared_surface() -> None:
    example = _define_doc_example_decl()

    assert isinstance(example, GraphFunction)
    assert example.graph_id == "example"
    assert example.name == "example"
    assert example.inputs == ["x"]
    assert example.outputs == ["y"]
    assert example.version == "0.1.0"
    assert callable(example.fn)
    assert example.fn.__name__ == "example"
    assert not isinstance(example.fn, GraphFunction)
    assert example.last_graph is None
    assert example.last_context is None
    assert example.last_memory_snapshot is None


def test_decorator_registers_under_graphfn() -> None:
    example = _define_doc_example_decl()
    registry = current_registry()

    assert registry is not None
    assert registry.get(nspace="graphfn", name="example", version="0.1.0") is example
    entries = [e for e in registry.list("graphfn") if e.name == "example"]
    assert [(e.nspace, e.name, e.version) for e in entries] == [("graphfn", "example", "0.1.0")]
    assert entries[0].obj is example
    # registry bookkeeping hook: filled in by the decorator, naming the graph
    assert isinstance(example.registry_key, str)
    assert "example" in example.registry_key


def test_example_with_ellipsis_body_returns_none_and_violates_declared_output() -> None:
    """The body is ``...`` so it returns None, but it declares outputs=['y']: 'y' is missing."""
    example = _define_doc_example_decl()

    with pytest.raises(ValueError, match="'y'"):
        run(example, x=1)


def test_decorator_parameters_and_latest_version_lookup() -> None:
    @graph_fn(name="sgf_versioned", inputs=["x"], outputs=["y"], version="0.9.1")
    async def v_old(x: int) -> dict[str, int]:
        return {"y": x}

    @graph_fn(name="sgf_versioned", inputs=["x"], outputs=["y"], version="0.10.0")
    async def v_new(x: int) -> dict[str, int]:
        return {"y": x * 10}

    registry = current_registry()
    assert v_new.version == "0.10.0"
    assert registry.get(nspace="graphfn", name="sgf_versioned", version="0.9.1") is v_old
    assert registry.get(nspace="graphfn", name="sgf_versioned", version="0.10.0") is v_new
    # version None -> the latest (0.10.0 sorts after 0.9.1)
    assert registry.get(nspace="graphfn", name="sgf_versioned", version=None) is v_new
    assert registry.get(nspace="graphfn", name="sgf_versioned") is v_new
    versions = [e.version for e in registry.list("graphfn") if e.name == "sgf_versioned"]
    assert versions == ["0.9.1", "0.10.0"]
    assert run(v_old, x=2) == {"y": 2}
    assert run(v_new, x=2) == {"y": 20}


# ---------------------------------------------------------------------------------------------
# §6 registry and agent metadata
# ---------------------------------------------------------------------------------------------


def test_agent_registers_the_same_object_under_agent_namespace() -> None:
    @graph_fn(name="sgf_agent_graph", outputs=["out"], version="1.2.3", agent="sgf_my_agent")
    async def agent_graph(q: str) -> dict[str, str]:
        return {"out": q.upper()}

    registry = current_registry()
    assert registry.get(nspace="graphfn", name="sgf_agent_graph", version="1.2.3") is agent_graph
    assert registry.get(nspace="agent", name="sgf_my_agent", version="1.2.3") is agent_graph
    assert registry.get(nspace="agent", name="sgf_my_agent") is agent_graph
    agent_entries = [e for e in registry.list("agent") if e.name == "sgf_my_agent"]
    assert [(e.nspace, e.version) for e in agent_entries] == [("agent", "1.2.3")]
    assert agent_entries[0].obj is agent_graph
    # metadata only: the graph runs exactly as without agent=
    assert run(agent_graph, q="hi") == {"out": "HI"}


def test_registry_snippets_register_like_the_decorator() -> None:
    """§6's ``registry.register(...)`` calls, run by hand on a GraphFunction."""

    async def body(x: int) -> dict[str, int]:
        return {"x": x}

    name, version, agent = "sgf_manual_register", "3.1.4", "sgf_manual_agent"
    gf = GraphFunction(name, body, version=version)
    registry = current_registry()

    # fmt: off
    registry.register(
        nspace="graphfn",
        name=name,
        version=version,
        obj=gf,
    )
    registry.register(
        nspace="agent",
        name=agent,
        version=version,
        obj=gf,
    )
    # fmt: on

    assert registry.get(nspace="graphfn", name=name) is gf
    assert registry.get(nspace="agent", name=agent, version=version) is gf
    assert run(gf, x=9) == {"x": 9}


def test_without_agent_nothing_is_registered_under_agent() -> None:
    @graph_fn(name="sgf_no_agent_graph")
    async def no_agent(x: int) -> dict[str, int]:
        return {"x": x}

    registry = current_registry()
    assert registry.get(nspace="graphfn", name="sgf_no_agent_graph") is no_agent
    assert all(e.obj is not no_agent for e in registry.list("agent"))
    assert all(e.name != "sgf_no_agent_graph" for e in registry.list("agent"))


# ---------------------------------------------------------------------------------------------
# §3 function shape & context injection
# ---------------------------------------------------------------------------------------------


def _define_doc_example_ctx() -> GraphFunction:
    # fmt: off
    # -- verbatim from the seed (§3) --
    @graph_fn(name="example")
    async def example(x: int, *, context: NodeContext):
        # `context` is injected automatically
        await context.channel().send_text(f"x={x}")
        return {"y": x + 1}

    # -- end of seed code --
    # fmt: on
    return example


def test_context_example_runs_and_sends_to_console(capsys: pytest.CaptureFixture[str]) -> None:
    example = _define_doc_example_ctx()

    result = run(example, x=41)

    assert result == {"y": 42}
    assert "[example/graph] x=41" in capsys.readouterr().out.splitlines()


def test_context_example_injects_a_node_context(
    recording_channel: RecordingChannelBackend,
) -> None:
    example = _define_doc_example_ctx()

    result = run(example, x=1)

    assert result == {"y": 2}
    ctx = example.last_context
    assert isinstance(ctx, NodeContext)
    assert ctx.graph_id == "example"
    assert ctx.run_id == example.last_graph.run_id
    [message] = recording_channel.messages
    assert message.kind == "text"
    assert message.payload == "x=1"
    assert message.graph_id == "example"
    assert message.run_id == ctx.run_id
    assert message.node_id == ctx.node_id


def test_context_example_via_await_and_run_async(
    recording_channel: RecordingChannelBackend,
) -> None:
    example = _define_doc_example_ctx()

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        return await example(x=5), await run_async(example, x=6)

    first, second = asyncio.run(main())

    assert first == {"y": 6}
    assert second == {"y": 7}
    assert [m.payload for m in recording_channel.messages] == ["x=5", "x=6"]


def test_injected_context_gives_access_to_builtin_services() -> None:
    seen: dict[str, Any] = {}

    @graph_fn(name="sgf_ctx_services")
    async def uses_services(*, context: NodeContext) -> dict[str, Any]:
        event = await context.memory().record("note", {"a": 1})
        await context.kv().set("sgf_ctx_services_key", 7)
        uri = await context.artifacts().save_text("hello")
        seen["logger"] = context.logger()
        seen["run_id"] = context.run_id
        return {
            "seq": event.seq,
            "kv": await context.kv().get("sgf_ctx_services_key"),
            "text": await context.artifacts().load_text(uri),
        }

    assert run(uses_services) == {"seq": 1, "kv": 7, "text": "hello"}
    assert isinstance(seen["logger"], logging.LoggerAdapter)
    assert seen["run_id"] == uses_services.last_graph.run_id
    snapshot = uses_services.last_memory_snapshot
    assert [(e.kind, e.data) for e in snapshot] == [("note", {"a": 1})]


def test_no_context_parameter_means_nothing_is_injected() -> None:
    @graph_fn(name="sgf_no_ctx_kwargs")
    async def takes_kwargs(x: int, **extras: Any) -> dict[str, Any]:
        return {"x": x, "extra_keys": sorted(extras)}

    @graph_fn(name="sgf_no_ctx_plain")
    async def plain(x: int) -> dict[str, int]:
        return {"x": x * 2}

    assert run(takes_kwargs, x=1) == {"x": 1, "extra_keys": []}
    assert run(takes_kwargs, x=1, other=2) == {"x": 1, "extra_keys": ["other"]}
    assert run(plain, x=4) == {"x": 8}


def test_context_can_be_positional_or_keyword_and_sync_bodies_work() -> None:
    @graph_fn(name="sgf_ctx_sync")
    def sync_body(x: int, context: NodeContext) -> dict[str, Any]:
        return {"is_ctx": isinstance(context, NodeContext), "graph": context.graph_id, "x": x}

    assert run(sync_body, x=3) == {"is_ctx": True, "graph": "sgf_ctx_sync", "x": 3}


# ---------------------------------------------------------------------------------------------
# §4 tools vs plain callables
# ---------------------------------------------------------------------------------------------


def _define_doc_mixed_body() -> GraphFunction:
    # fmt: off
    # -- verbatim from the seed (§4 "Plain callables") --
    def local_scale(x: int, factor: int = 2) -> int:
        return x * factor

    @graph_fn(name="mixed_body")
    async def mixed_body(x: int, *, context: NodeContext):
        y = local_scale(x)          # plain Python call, no node created
        context.logger().info("scaled", extra={"y": y})
        return {"y": y}

    # -- end of seed code --
    # fmt: on
    return mixed_body


def test_mixed_body_plain_callable_runs_inline_and_creates_no_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mixed_body = _define_doc_mixed_body()
    caplog.set_level(logging.INFO, logger="aethergraph.node")

    result = run(mixed_body, x=21)

    assert result == {"y": 42}
    assert isinstance(mixed_body.last_graph, TaskGraph)
    assert len(mixed_body.last_graph.nodes) == 0
    records = [r for r in caplog.records if r.getMessage() == "scaled"]
    assert len(records) == 1
    record = records[0]
    assert record.name == "aethergraph.node"
    assert record.y == 42
    assert record.graph_id == "mixed_body"
    assert record.run_id == mixed_body.last_graph.run_id
    assert record.node_id == mixed_body.last_context.node_id


def _define_doc_tool_usage() -> tuple[Any, GraphFunction]:
    # fmt: off
    # -- verbatim from the seed (§4 "@tool functions - nodes on the fly") --
    @tool(outputs=["total"])
    def sum_vec(xs: list[float]) -> dict:
        return {"total": sum(xs)}

    @graph_fn(name="tool_usage")
    async def tool_usage(xs: list[float], *, context: NodeContext):
        stats = {"n": len(xs)}           # plain Python
        out = sum_vec(xs=xs)             # becomes a node (NodeHandle)
        await context.channel().send_text(
            f"n={stats['n']}, total={out['total']}"
        )
        return {"total": out["total"]}

    # -- end of seed code --
    # fmt: on
    return sum_vec, tool_usage


def test_tool_usage_prints_count_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    _, tool_usage = _define_doc_tool_usage()

    result = run(tool_usage, xs=[1.0, 2.0, 3.0])

    assert result == {"total": 6.0}
    assert "[tool_usage/graph] n=3, total=6.0" in capsys.readouterr().out.splitlines()


def test_tool_usage_tool_call_becomes_one_tracked_node(
    recording_channel: RecordingChannelBackend,
) -> None:
    _, tool_usage = _define_doc_tool_usage()

    result = run(tool_usage, xs=[1.0, 2.0, 3.0])

    assert result == {"total": 6.0}
    assert [m.payload for m in recording_channel.messages] == ["n=3, total=6.0"]
    graph = tool_usage.last_graph
    assert isinstance(graph, TaskGraph)
    assert graph.graph_id == "tool_usage"
    assert len(graph.nodes) == 1
    [(node_id, node)] = graph.nodes.items()
    assert node.node_id == node_id
    assert node.tool == "sum_vec"
    assert node.status == "done"
    assert node.attempts == 1
    assert node.inputs == {"xs": [1.0, 2.0, 3.0]}


def test_tool_called_outside_a_graph_is_plain_python() -> None:
    sum_vec, _ = _define_doc_tool_usage()

    assert sum_vec(xs=[1.0, 2.5]) == {"total": 3.5}


def test_tool_call_in_body_returns_node_handle_usable_like_a_dict() -> None:
    captured: dict[str, Any] = {}

    @tool(outputs=["total", "count"])
    def sgf_stats(xs: list[float]) -> dict[str, Any]:
        return {"total": sum(xs), "count": len(xs)}

    @graph_fn(name="sgf_handle_like_dict")
    async def body(xs: list[float]) -> dict[str, Any]:
        out = sgf_stats(xs=xs)
        captured["is_handle"] = isinstance(out, NodeHandle)
        awaited = await out
        return {
            "mean": out["total"] / out["count"],
            "awaited": dict(awaited),
            "label": f"{out['count']} items",
        }

    result = run(body, xs=[2.0, 4.0])

    assert captured["is_handle"] is True
    assert result == {"mean": 3.0, "awaited": {"total": 6.0, "count": 2}, "label": "2 items"}


def test_plain_callables_are_not_nodes_but_each_tool_call_is() -> None:
    calls: list[int] = []

    def plain_double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @tool(outputs=["value"])
    def sgf_inc(x: int) -> dict[str, int]:
        return {"value": x + 1}

    @tool(outputs=["value"])
    async def sgf_async_square(x: int) -> dict[str, int]:
        return {"value": x * x}

    @graph_fn(name="sgf_node_counting", outputs=["a", "b", "c"])
    async def counting(x: int) -> dict[str, Any]:
        p = plain_double(x)
        q = plain_double(p)
        first = sgf_inc(x=q)
        second = sgf_inc(x=first["value"])
        square = sgf_async_square(x=second["value"])
        return {"a": p + q, "b": second["value"], "c": square["value"]}

    result = run(counting, x=1)

    assert result == {"a": 6, "b": 6, "c": 36}
    assert calls == [1, 2]
    assert _node_tools(counting) == ["sgf_async_square", "sgf_inc", "sgf_inc"]
    graph = counting.last_graph
    assert all(node.status == "done" for node in graph.nodes.values())
    assert all(node.attempts == 1 for node in graph.nodes.values())
    # each run traces a fresh graph
    run(counting, x=2)
    assert counting.last_graph is not graph
    assert len(counting.last_graph.nodes) == 3


def test_graph_without_tool_calls_has_an_empty_graph() -> None:
    @graph_fn(name="sgf_pure_python", outputs=["y"])
    async def pure(x: int) -> dict[str, int]:
        return {"y": sum(range(x))}

    assert run(pure, x=5) == {"y": 10}
    assert len(pure.last_graph.nodes) == 0


# ---------------------------------------------------------------------------------------------
# §5 output contract
# ---------------------------------------------------------------------------------------------


@tool(outputs=["total"])
def sgf_total(xs: list[float]) -> dict[str, float]:
    return {"total": sum(xs)}


@tool(outputs=["lo", "hi"])
def sgf_bounds(xs: list[float]) -> dict[str, float]:
    return {"lo": min(xs), "hi": max(xs)}


def test_dict_result_without_declared_outputs_passes_through() -> None:
    @graph_fn(name="sgf_out_passthrough")
    async def body() -> dict[str, Any]:
        return {"b": 2, "a": 1, "c": [3]}

    assert run(body) == {"b": 2, "a": 1, "c": [3]}


def test_dict_result_is_restricted_to_declared_keys_in_declared_order() -> None:
    @graph_fn(name="sgf_out_restricted", outputs=["b", "a"])
    async def body() -> dict[str, Any]:
        return {"a": 1, "extra": "dropped", "b": 2}

    result = run(body)

    assert list(result.items()) == [("b", 2), ("a", 1)]


def test_dict_values_may_be_node_handles_and_refs() -> None:
    @graph_fn(name="sgf_out_dict_refs", outputs=["total", "bounds", "literal"])
    async def body(xs: list[float]) -> dict[str, Any]:
        total = sgf_total(xs=xs)
        bounds = sgf_bounds(xs=xs)
        return {"total": total["total"], "bounds": bounds, "literal": "ok"}

    result = run(body, xs=[3.0, 1.0, 2.0])

    assert result == {"total": 6.0, "bounds": {"lo": 1.0, "hi": 3.0}, "literal": "ok"}


def test_single_node_handle_exposes_its_outputs() -> None:
    @graph_fn(name="sgf_out_handle")
    async def body(xs: list[float]) -> Any:
        return sgf_bounds(xs=xs)

    @graph_fn(name="sgf_out_handle_declared", outputs=["hi", "lo"])
    async def body_declared(xs: list[float]) -> Any:
        return sgf_bounds(xs=xs)

    assert run(body, xs=[5.0, -1.0]) == {"lo": -1.0, "hi": 5.0}
    assert list(run(body_declared, xs=[5.0, -1.0]).items()) == [("hi", 5.0), ("lo", -1.0)]


def test_single_literal_with_one_declared_output() -> None:
    @graph_fn(name="sgf_out_literal", outputs=["answer"])
    async def body() -> int:
        return 42

    assert run(body) == {"answer": 42}


def test_single_ref_with_one_declared_output() -> None:
    @graph_fn(name="sgf_out_ref", outputs=["sum"])
    async def body(xs: list[float]) -> Any:
        return sgf_total(xs=xs)["total"]

    assert run(body, xs=[1.5, 2.5]) == {"sum": 4.0}


def test_single_literal_without_declared_outputs_is_a_value_error() -> None:
    @graph_fn(name="sgf_out_literal_none_declared")
    async def body() -> int:
        return 42

    with pytest.raises(ValueError, match="output"):
        run(body)


def test_single_literal_with_two_declared_outputs_is_a_value_error() -> None:
    @graph_fn(name="sgf_out_literal_two_declared", outputs=["a", "b"])
    async def body() -> int:
        return 42

    with pytest.raises(ValueError, match="output"):
        run(body)


def test_missing_declared_key_is_a_value_error_naming_it() -> None:
    @graph_fn(name="sgf_out_missing", outputs=["present", "absent_key"])
    async def body() -> dict[str, int]:
        return {"present": 1}

    with pytest.raises(ValueError, match="'absent_key'"):
        run(body)


def test_missing_declared_key_from_a_node_handle_is_a_value_error_naming_it() -> None:
    @graph_fn(name="sgf_out_handle_missing", outputs=["total", "count"])
    async def body(xs: list[float]) -> Any:
        return sgf_total(xs=xs)

    with pytest.raises(ValueError, match="'count'"):
        run(body, xs=[1.0])


def test_output_contract_also_applies_to_await_and_run_async() -> None:
    @graph_fn(name="sgf_out_async_missing", outputs=["needed"])
    async def body() -> dict[str, int]:
        return {"other": 1}

    with pytest.raises(ValueError, match="'needed'"):
        asyncio.run(body())

    async def via_run_async() -> dict[str, Any]:
        return await run_async(body)

    with pytest.raises(ValueError, match="'needed'"):
        asyncio.run(via_run_async())
