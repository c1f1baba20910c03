"""Tests of ``@tool``: decoration options, registration, plain calls, output normalization,
context injection, argument binding and handle accessors inside graph bodies."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from aethergraph import (
    ConfigurationError,
    NodeContext,
    NodeHandle,
    OutputContractError,
    Ref,
    Tool,
    ToolError,
    current_registry,
    graph_fn,
    run,
    tool,
)
from aethergraph.errors import AetherGraphError, ToolCallError, UnknownOutputError
from aethergraph.graph.tool_spec import ToolPolicy

# -- decoration -------------------------------------------------------------------------------


@tool
def tt_bare(x: int) -> dict[str, Any]:
    """Doubles x."""
    return {"y": x * 2}


@tool(outputs=["total", "count"], name="tt_named_stats", version="2.1.0")
def tt_stats_impl(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs), "count": len(xs)}


@tool(outputs=["y"])
async def tt_async_inc(x: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"y": x + 1}


def test_bare_tool_defaults() -> None:
    assert isinstance(tt_bare, Tool)
    assert tt_bare.name == "tt_bare"
    assert tt_bare.version == "0.1.0"
    assert tt_bare.outputs == []
    assert tt_bare.__name__ == "tt_bare"
    assert tt_bare.__doc__ == "Doubles x."
    assert tt_bare.spec.description == "Doubles x."
    assert tt_bare.spec.policy == ToolPolicy()
    assert "tt_bare" in repr(tt_bare)


def test_tool_with_options() -> None:
    assert isinstance(tt_stats_impl, Tool)
    assert tt_stats_impl.name == "tt_named_stats"
    assert tt_stats_impl.version == "2.1.0"
    assert tt_stats_impl.outputs == ["total", "count"]
    # the outputs list is a copy: mutating it does not change the tool
    tt_stats_impl.outputs.append("junk")
    assert tt_stats_impl.outputs == ["total", "count"]


def test_tool_policy_options_are_kept() -> None:
    @tool(
        name="tt_policy",
        retries=3,
        retry_backoff=0.25,
        retry_backoff_max=2.0,
        retry_jitter=False,
        timeout=5.0,
        queue="gpu",
    )
    def f() -> None:
        return None

    policy = f.spec.policy
    assert policy.retries == 3
    assert policy.retry_backoff == 0.25
    assert policy.retry_backoff_max == 2.0
    assert policy.retry_jitter is False
    assert policy.timeout == 5.0
    assert policy.queue == "gpu"
    assert policy.backoff_delay(1) == 0.25
    assert policy.backoff_delay(2) == 0.5
    assert policy.backoff_delay(10) == 2.0


def test_tool_outputs_accepts_tuple() -> None:
    @tool(outputs=("a", "b"), name="tt_tuple_outputs")
    def f() -> dict[str, Any]:
        return {"a": 1, "b": 2}

    assert f.outputs == ["a", "b"]
    assert f() == {"a": 1, "b": 2}


def test_tool_registered_under_tool_namespace() -> None:
    reg = current_registry()
    assert reg.get(nspace="tool", name="tt_bare") is tt_bare
    assert reg.get(nspace="tool", name="tt_named_stats") is tt_stats_impl
    assert reg.get(nspace="tool", name="tt_named_stats", version="2.1.0") is tt_stats_impl
    entries = [e for e in reg.list("tool") if e.name == "tt_named_stats"]
    assert [(e.nspace, e.name, e.version) for e in entries] == [("tool", "tt_named_stats", "2.1.0")]
    # the function name of a renamed tool is not registered
    names = {e.name for e in reg.list("tool")}
    assert "tt_stats_impl" not in names


def test_redefining_a_tool_replaces_its_registration() -> None:
    @tool(name="tt_redefined")
    def first() -> dict[str, Any]:
        return {"v": 1}

    @tool(name="tt_redefined")
    def second() -> dict[str, Any]:
        return {"v": 2}

    assert current_registry().get(nspace="tool", name="tt_redefined") is second
    assert first() == {"v": 1}


# -- invalid options --------------------------------------------------------------------------


def _plain(x: int) -> dict[str, Any]:
    return {"x": x}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"outputs": "total"}, "outputs"),
        ({"outputs": ["a", "a"]}, "duplicate"),
        ({"outputs": ["a", ""]}, "outputs"),
        ({"outputs": ["a", 3]}, "outputs"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -2.5}, "timeout"),
        ({"retry_backoff": -1.0}, "retry_backoff"),
        ({"queue": ""}, "queue"),
        ({"name": "bad-name"}, "identifier"),
        ({"name": "has space"}, "identifier"),
        ({"name": ""}, "identifier"),
        ({"version": ""}, "version"),
    ],
)
def test_invalid_options_raise_configuration_error(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        tool(**options)(_plain)


def test_invalid_option_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="retries"):
        tool(retries=-1)
    assert issubclass(ConfigurationError, AetherGraphError)


def test_decorating_twice_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="already a tool"):
        tool(tt_bare)
    with pytest.raises(ConfigurationError, match="already a tool"):
        tool(outputs=["y"])(tt_bare)


def test_var_positional_parameter_is_rejected() -> None:
    def star(*items: int) -> dict[str, Any]:
        return {"n": len(items)}

    with pytest.raises(ConfigurationError, match=r"\*items"):
        tool(name="tt_star")(star)


def test_positional_only_parameter_is_rejected() -> None:
    def posonly(a: int, /, b: int) -> dict[str, Any]:
        return {"s": a + b}

    with pytest.raises(ConfigurationError, match="positional-only"):
        tool(name="tt_posonly")(posonly)


def test_non_callable_is_rejected() -> None:
    with pytest.raises(ConfigurationError):
        tool(name="tt_not_callable")(42)  # type: ignore[arg-type]


def test_lambda_needs_a_name() -> None:
    with pytest.raises(ConfigurationError, match="identifier"):
        tool(lambda: {"x": 1})
    named = tool(name="tt_lambda")(lambda: {"x": 1})
    assert named.name == "tt_lambda"
    assert named() == {"x": 1}


# -- outside a graph: plain Python ------------------------------------------------------------


def test_sync_tool_outside_graph_returns_dict() -> None:
    assert tt_bare(x=4) == {"y": 8}
    assert tt_bare(5) == {"y": 10}
    assert tt_stats_impl(xs=[1, 2, 3]) == {"total": 6, "count": 3}


def test_async_tool_outside_graph_returns_awaitable() -> None:
    pending = tt_async_inc(x=1)
    assert inspect.isawaitable(pending)
    assert asyncio.run(pending) == {"y": 2}

    async def main() -> dict[str, Any]:
        return await tt_async_inc(x=41)

    assert asyncio.run(main()) == {"y": 42}


def test_argument_errors_outside_graph() -> None:
    with pytest.raises(ToolCallError, match="tt_bare"):
        tt_bare()
    with pytest.raises(ToolCallError, match="tt_bare"):
        tt_bare(x=1, z=2)
    with pytest.raises(TypeError):
        tt_bare(1, 2)


# -- output normalization ---------------------------------------------------------------------


def test_dict_result_is_kept_with_extra_keys() -> None:
    @tool(outputs=["a"], name="tt_extra_keys")
    def f() -> dict[str, Any]:
        return {"a": 1, "extra": 2}

    assert f() == {"a": 1, "extra": 2}


def test_single_declared_output_wraps_scalar() -> None:
    @tool(outputs=["value"], name="tt_wrap_scalar")
    def f(x: int) -> int:
        return x * 3

    @tool(outputs=["value"], name="tt_wrap_list")
    def g() -> list[int]:
        return [1, 2]

    assert f(x=2) == {"value": 6}
    assert g() == {"value": [1, 2]}


def test_no_declared_outputs_scalar_becomes_result() -> None:
    @tool(name="tt_scalar_result")
    def f() -> str:
        return "hi"

    @tool(name="tt_none_result")
    def g() -> None:
        return None

    @tool(name="tt_dict_result")
    def h() -> dict[str, Any]:
        return {"k": None}

    assert f() == {"result": "hi"}
    assert g() == {}
    assert h() == {"k": None}


def test_multiple_declared_outputs_and_scalar_is_contract_error() -> None:
    @tool(outputs=["a", "b"], name="tt_multi_scalar")
    def f() -> int:
        return 5

    with pytest.raises(OutputContractError, match="tt_multi_scalar") as info:
        f()
    assert isinstance(info.value, ValueError)
    assert "returned a value of type int;" in str(info.value)  # not "returned a int"


def test_missing_declared_key_outside_graph() -> None:
    @tool(outputs=["total", "count"], name="tt_missing_key")
    def f() -> dict[str, Any]:
        return {"total": 1}

    with pytest.raises(OutputContractError) as info:
        f()
    message = str(info.value)
    assert "tt_missing_key" in message
    assert "'count'" in message
    assert isinstance(info.value, ValueError)


def test_missing_declared_key_outside_graph_async() -> None:
    @tool(outputs=["total"], name="tt_missing_key_async")
    async def f() -> dict[str, Any]:
        return {"other": 1}

    with pytest.raises(OutputContractError, match="'total'"):
        asyncio.run(f())


def test_missing_declared_key_inside_graph_is_tool_error() -> None:
    @tool(outputs=["total", "count"], name="tt_missing_in_graph")
    def f(x: int) -> dict[str, Any]:
        return {"total": x}

    @graph_fn(name="tt_missing_graph")
    async def body() -> Any:
        return f(x=1)

    with pytest.raises(ToolError) as info:
        run(body)
    err = info.value
    assert "OutputContractError" in err.exc_type
    assert "'count'" in err.message
    assert err.tool == "tt_missing_in_graph"
    assert err.node_id == "tt_missing_in_graph_0"
    assert "count" in str(err)


def test_awaiting_handle_of_contract_violating_tool_raises_tool_error() -> None:
    @tool(outputs=["a", "b"], name="tt_scalar_in_graph")
    def f() -> int:
        return 3

    seen: dict[str, Any] = {}

    @graph_fn(name="tt_scalar_in_graph_g")
    async def body() -> Any:
        h = f()
        try:
            await h
        except ToolError as exc:
            seen["exc_type"] = exc.exc_type
            seen["message"] = exc.message
        return {}

    with pytest.raises(ToolError):
        run(body)
    assert "OutputContractError" in seen["exc_type"]
    assert "tt_scalar_in_graph" in seen["message"]


def test_normalization_inside_graph() -> None:
    @tool(outputs=["v"], name="tt_norm_single")
    def single() -> int:
        return 9

    @tool(name="tt_norm_none")
    def nothing() -> None:
        return None

    @tool(name="tt_norm_scalar")
    def scalar() -> str:
        return "s"

    @graph_fn(name="tt_norm_graph")
    async def body() -> Any:
        return {
            "single": await single(),
            "nothing": await nothing(),
            "scalar": await scalar(),
            "one": await single()["v"],
        }

    assert run(body) == {
        "single": {"v": 9},
        "nothing": {},
        "scalar": {"result": "s"},
        "one": 9,
    }


# -- context injection ------------------------------------------------------------------------


@tool(name="tt_ctx_probe")
def tt_ctx_probe(label: str, context: NodeContext) -> dict[str, Any]:
    assert isinstance(context, NodeContext)
    return {
        "label": label,
        "run_id": context.run_id,
        "graph_id": context.graph_id,
        "node_id": context.node_id,
    }


@tool(name="tt_ctx_probe_async")
async def tt_ctx_probe_async(*, context: NodeContext) -> dict[str, Any]:
    return {"run_id": context.run_id, "graph_id": context.graph_id, "node_id": context.node_id}


def test_context_injected_inside_graph() -> None:
    @graph_fn(name="tt_ctx_graph")
    async def body(*, context: NodeContext) -> Any:
        a = tt_ctx_probe(label="a")
        b = tt_ctx_probe("b")
        c = tt_ctx_probe_async()
        return {
            "a": await a,
            "b": await b,
            "c": await c,
            "ids": [a.node_id, b.node_id, c.node_id],
            "run_id": context.run_id,
        }

    out = run(body)
    run_id = out["run_id"]
    assert run_id == body.last_graph.run_id
    a_id, b_id, c_id = out["ids"]
    assert out["a"] == {"label": "a", "run_id": run_id, "graph_id": "tt_ctx_graph", "node_id": a_id}
    assert out["b"] == {"label": "b", "run_id": run_id, "graph_id": "tt_ctx_graph", "node_id": b_id}
    assert out["c"] == {"run_id": run_id, "graph_id": "tt_ctx_graph", "node_id": c_id}
    assert len({a_id, b_id, c_id}) == 3
    # the context is not an input of the node
    for node in body.last_graph:
        assert "context" not in node.inputs


def test_explicit_context_is_replaced_inside_graph() -> None:
    fake = NodeContext(run_id="fake-run", graph_id="fake-graph", node_id="fake-node")

    @graph_fn(name="tt_ctx_replaced")
    async def body() -> Any:
        kw = tt_ctx_probe(label="kw", context=fake)
        pos = tt_ctx_probe("pos", context=fake)
        return {"kw": await kw, "pos": await pos, "ids": [kw.node_id, pos.node_id]}

    out = run(body)
    run_id = body.last_graph.run_id
    for key, node_id in zip(("kw", "pos"), out["ids"], strict=True):
        assert out[key]["run_id"] == run_id
        assert out[key]["graph_id"] == "tt_ctx_replaced"
        assert out[key]["node_id"] == node_id
    for node in body.last_graph:
        assert "context" not in node.inputs


def test_context_outside_graph_defaults_to_a_usable_context() -> None:
    out = tt_ctx_probe(label="plain")
    assert out["label"] == "plain"
    assert isinstance(out["run_id"], str)
    assert out["run_id"]
    assert isinstance(out["graph_id"], str)
    assert isinstance(out["node_id"], str)
    default = asyncio.run(tt_ctx_probe_async())
    assert default["run_id"]


def test_context_outside_graph_uses_the_one_passed() -> None:
    given = NodeContext(run_id="r-given", graph_id="g-given", node_id="n-given")
    assert tt_ctx_probe(label="given", context=given) == {
        "label": "given",
        "run_id": "r-given",
        "graph_id": "g-given",
        "node_id": "n-given",
    }


def test_context_outside_graph_uses_the_one_passed_async() -> None:
    given = NodeContext(run_id="r-given-a", graph_id="g-given-a", node_id="n-given-a")
    assert asyncio.run(tt_ctx_probe_async(context=given)) == {
        "run_id": "r-given-a",
        "graph_id": "g-given-a",
        "node_id": "n-given-a",
    }


def test_context_outside_graph_is_usable() -> None:
    @tool(name="tt_ctx_usable")
    async def f(*, context: NodeContext) -> dict[str, Any]:
        event = await context.memory().record("note", {"n": 1})
        recent = await context.memory().recent(5)
        return {"seq": event.seq, "kinds": [e.kind for e in recent]}

    out = asyncio.run(f())
    assert out["seq"] >= 1
    assert out["kinds"][-1] == "note"


# -- argument binding inside a graph body -----------------------------------------------------


@tool(outputs=["s"], name="tt_add3")
def tt_add3(a: int, b: int, c: int = 100) -> dict[str, Any]:
    return {"s": a + b + c}


def _call_error(call: Any) -> ToolCallError:
    """Run a graph whose body makes ``call()`` and returns the ToolCallError it raised."""
    caught: list[BaseException] = []

    @graph_fn(name="tt_arg_error_graph")
    async def body() -> Any:
        try:
            call()
        except BaseException as exc:
            caught.append(exc)
        return {}

    assert run(body) == {}
    assert len(caught) == 1, "the bad call did not raise at call time"
    assert body.last_graph is not None
    assert len(body.last_graph) == 0, "a bad call must not add a node"
    exc = caught[0]
    assert isinstance(exc, ToolCallError)
    assert isinstance(exc, TypeError)
    return exc


def test_unknown_argument_inside_graph() -> None:
    exc = _call_error(lambda: tt_add3(a=1, b=2, d=4))
    assert "tt_add3" in str(exc)
    assert "'d'" in str(exc)


def test_missing_argument_inside_graph() -> None:
    exc = _call_error(lambda: tt_add3(a=1))
    assert "tt_add3" in str(exc)
    assert "'b'" in str(exc)


def test_multiple_values_inside_graph() -> None:
    exc = _call_error(lambda: tt_add3(1, 2, a=3))
    assert "tt_add3" in str(exc)
    assert "'a'" in str(exc)


def test_too_many_positionals_inside_graph() -> None:
    exc = _call_error(lambda: tt_add3(1, 2, 3, 4))
    assert "tt_add3" in str(exc)
    assert "4" in str(exc)


def test_argument_error_propagates_out_of_run() -> None:
    @graph_fn(name="tt_arg_error_propagates")
    async def body() -> Any:
        return tt_add3(a=1, zzz=2)

    with pytest.raises(ToolCallError, match="tt_add3"):
        run(body)


def test_positional_args_bound_by_name() -> None:
    @graph_fn(name="tt_positional_graph")
    async def body() -> Any:
        h1 = tt_add3(1, 2)
        h2 = tt_add3(1, 2, 3)
        h3 = tt_add3(4, b=5, c=6)
        return {"s1": h1["s"], "s2": h2["s"], "s3": h3.s}

    assert run(body) == {"s1": 103, "s2": 6, "s3": 15}
    nodes = list(body.last_graph)
    assert [n.inputs for n in nodes] == [
        {"a": 1, "b": 2},
        {"a": 1, "b": 2, "c": 3},
        {"a": 4, "b": 5, "c": 6},
    ]


def test_var_keyword_tool_accepts_any_names() -> None:
    @tool(name="tt_kwargs")
    def f(a: int, **extra: Any) -> dict[str, Any]:
        return {"a": a, "extra": extra}

    @graph_fn(name="tt_kwargs_graph")
    async def body() -> Any:
        return f(1, foo=2, bar=3)

    assert run(body) == {"a": 1, "extra": {"foo": 2, "bar": 3}}
    assert f(a=0, z=1) == {"a": 0, "extra": {"z": 1}}


# -- handles ----------------------------------------------------------------------------------


def test_call_inside_graph_returns_handle_at_once() -> None:
    seen: dict[str, Any] = {}

    @graph_fn(name="tt_handle_types")
    async def body() -> Any:
        h = tt_stats_impl(xs=[1, 2])
        seen["handle"] = isinstance(h, NodeHandle)
        seen["item"] = isinstance(h["total"], Ref)
        seen["attr"] = isinstance(h.count, Ref)
        seen["node_id"] = h.node_id
        seen["value"] = await h
        seen["one"] = await h["count"]
        return h

    assert run(body) == {"total": 3, "count": 2}
    assert seen == {
        "handle": True,
        "item": True,
        "attr": True,
        "node_id": "tt_named_stats_0",
        "value": {"total": 3, "count": 2},
        "one": 2,
    }


def test_undeclared_output_access_raises() -> None:
    seen: dict[str, BaseException] = {}

    @graph_fn(name="tt_undeclared_access")
    async def body() -> Any:
        h = tt_stats_impl(xs=[1])
        try:
            h["mean"]
        except BaseException as exc:
            seen["item"] = exc
        try:
            _ = h.mean
        except BaseException as exc:
            seen["attr"] = exc
        return h

    assert run(body) == {"total": 1, "count": 1}
    item, attr = seen["item"], seen["attr"]
    assert isinstance(item, UnknownOutputError)
    assert isinstance(item, KeyError)
    assert "'mean'" in str(item)
    assert "tt_named_stats" in str(item)
    assert isinstance(attr, AttributeError)
    assert "mean" in str(attr)
    assert not hasattr(NodeHandle, "mean")


def test_undeclared_outputs_tool_allows_any_key_but_missing_value_raises() -> None:
    seen: dict[str, Any] = {}

    @graph_fn(name="tt_any_key")
    async def body() -> Any:
        h = tt_bare(x=3)
        ref = h["anything"]
        seen["is_ref"] = isinstance(ref, Ref)
        seen["y"] = await h.y
        try:
            await ref
        except BaseException as exc:
            seen["error"] = exc
        return {"y": h["y"]}

    assert run(body) == {"y": 6}
    assert seen["is_ref"] is True
    assert seen["y"] == 6
    assert isinstance(seen["error"], UnknownOutputError)
    assert "anything" in str(seen["error"])
