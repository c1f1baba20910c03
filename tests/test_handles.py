"""NodeHandle / Ref semantics: await, transparent use in plain Python, no deadlocks."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest

from aethergraph import ToolError, graph_fn, run, run_async, tool
from aethergraph.errors import RuntimeUsageError, UnknownOutputError
from aethergraph.tracing.handles import NodeHandle, Ref


@tool(outputs=["value"])
async def hd_make(value: Any) -> dict[str, Any]:
    await asyncio.sleep(0.001)  # make sure the body really has to wait
    return {"value": value}


@tool
def hd_undeclared(x: int) -> dict[str, Any]:
    return {"a": x, "b": [x, x + 1]}


def test_tool_call_returns_handle_and_schedules_without_await() -> None:
    ran = threading.Event()

    @tool(outputs=["ok"])
    def hd_side_effect() -> dict[str, Any]:
        ran.set()
        return {"ok": True}

    seen: dict[str, Any] = {}

    @graph_fn(name="hd_no_await")
    async def body() -> Any:
        handle = hd_side_effect()
        seen["handle"] = handle
        seen["ref"] = handle["ok"]
        # Never awaited: the node must run anyway, while the body is still going.
        seen["ran_during_body"] = await asyncio.to_thread(ran.wait, 30)
        return {}

    run(body)
    assert isinstance(seen["handle"], NodeHandle)
    assert isinstance(seen["ref"], Ref)
    assert seen["ran_during_body"] is True


def test_await_handle_and_ref() -> None:
    @graph_fn(name="hd_await")
    async def body() -> Any:
        h = hd_make(value={"k": [1, 2]})
        whole = await h
        one = await h["value"]
        deep = await h["value"]["k"][1]
        attr = await h.value
        return {"whole": whole, "one": one, "deep": deep, "attr": attr}

    assert run(body) == {
        "whole": {"value": {"k": [1, 2]}},
        "one": {"k": [1, 2]},
        "deep": 2,
        "attr": {"k": [1, 2]},
    }


def test_refs_behave_like_values_in_plain_python() -> None:
    results: dict[str, Any] = {}

    @graph_fn(name="hd_transparent")
    async def body() -> Any:
        n = hd_make(value=7)["value"]
        text = hd_make(value="abc")["value"]
        items = hd_make(value=[3, 1, 2])["value"]
        results["fstring"] = f"n={n}, padded={n:03d}"
        results["str"] = str(text)
        results["compare"] = (n > 3, n == 7, n != 7, n <= 6, n == 7)
        results["arith"] = (n + 1, 1 + n, n * 2, n / 2, n // 2, n % 4, -n, abs(-n), 2**n, n**2)
        results["len"] = len(items)
        results["iter"] = sorted(items)
        results["contains"] = 3 in items
        results["bool"] = bool(n), bool(hd_make(value=0)["value"])
        results["convert"] = int(n), float(n), round(n / 3, 2)
        results["index"] = [10, 20, 30][hd_make(value=1)["value"]]
        results["method"] = text.upper()
        results["if"] = "big" if n > 5 else "small"
        results["ref_plus_ref"] = n + hd_make(value=3)["value"]
        return {}

    run(body)
    assert results == {
        "fstring": "n=7, padded=007",
        "str": "abc",
        "compare": (True, True, False, False, True),
        "arith": (8, 8, 14, 3.5, 3, 3, -7, 7, 128, 49),
        "len": 3,
        "iter": [1, 2, 3],
        "contains": True,
        "bool": (True, False),
        "convert": (7, 7.0, 2.33),
        "index": 20,
        "method": "ABC",
        "if": "big",
        "ref_plus_ref": 10,
    }


def test_sync_use_inside_a_running_event_loop_does_not_deadlock() -> None:
    """As in Jupyter: the body runs on an already-running loop and blocks on a ref."""

    @graph_fn(name="hd_in_loop", outputs=["msg"])
    async def body() -> Any:
        out = hd_make(value=41)
        return {"msg": f"total={out['value'] + 1}"}

    async def notebook_cell() -> Any:
        first = await body()
        second = await run_async(body)
        third = run(body)  # sync entry point called while this loop is running
        return first, second, third

    first, second, third = asyncio.run(notebook_cell())
    assert first == second == third == {"msg": "total=42"}


def test_undeclared_outputs_are_reachable_and_missing_keys_are_clear() -> None:
    @graph_fn(name="hd_undeclared_g")
    async def body() -> Any:
        h = hd_undeclared(x=1)
        got = {"a": await h["a"], "b1": await h["b"][1]}
        with pytest.raises(UnknownOutputError, match="'missing'"):
            await h["missing"]
        return got

    assert run(body) == {"a": 1, "b1": 2}


def test_declared_outputs_are_checked_at_trace_time() -> None:
    @graph_fn(name="hd_declared_g")
    async def body() -> Any:
        h = hd_make(value=1)
        with pytest.raises(UnknownOutputError, match="declares outputs \\['value'\\]"):
            h["nope"]
        with pytest.raises(AttributeError):
            h.nope  # noqa: B018
        assert h.node_id == "hd_make_0"
        return {}

    run(body)


def test_failed_ref_raises_tool_error_in_plain_use() -> None:
    @tool(outputs=["x"])
    def hd_fail() -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    caught: list[ToolError] = []

    @graph_fn(name="hd_fail_g")
    async def body() -> Any:
        bad = hd_fail()["x"]
        try:
            if bad > 1:
                pass
        except ToolError as exc:
            caught.append(exc)
            raise

    with pytest.raises(ToolError):
        run(body)
    assert caught
    assert caught[0].exc_type == "ZeroDivisionError"
    assert isinstance(caught[0].__cause__, ZeroDivisionError)


def test_repr_never_blocks_and_pickling_is_refused() -> None:
    gate = threading.Event()

    @tool(outputs=["y"])
    def hd_gated() -> dict[str, Any]:
        gate.wait(30)
        return {"y": 1}

    seen: dict[str, Any] = {}

    @graph_fn(name="hd_repr")
    async def body() -> Any:
        h = hd_gated()
        seen["handle_repr"] = repr(h)
        seen["ref_repr"] = repr(h["y"])
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(h["y"])
        gate.set()
        await h
        seen["done_repr"] = repr(h["y"])
        return {}

    run(body)
    assert seen["handle_repr"] in (
        "<NodeHandle hd_gated_0 (pending)>",
        "<NodeHandle hd_gated_0 (running)>",
    )
    assert "hd_gated_0['y']" in seen["ref_repr"]
    assert seen["done_repr"] == "<Ref hd_gated_0['y'] = 1>"


def test_handle_from_another_run_is_rejected() -> None:
    box: dict[str, Any] = {}

    @graph_fn(name="hd_leak_a")
    async def first() -> Any:
        box["h"] = hd_make(value=1)
        await box["h"]
        return {}

    @graph_fn(name="hd_leak_b")
    async def second() -> Any:
        hd_make(value=box["h"]["value"])
        return {}

    run(first)
    with pytest.raises(RuntimeUsageError, match="does not belong to this run"):
        run(second)


def test_sync_wait_on_the_runtime_thread_is_an_error_not_a_deadlock() -> None:
    gate = threading.Event()
    box: dict[str, Any] = {}

    @tool(outputs=["y"])
    def hd_slow() -> dict[str, Any]:
        gate.wait(30)
        return {"y": 1}

    @tool(outputs=["y"])
    async def hd_misuse() -> dict[str, Any]:
        try:
            return {"y": str(box["ref"])}  # a ref smuggled onto the runtime thread
        finally:
            gate.set()

    @graph_fn(name="hd_misuse_g")
    async def body() -> Any:
        box["ref"] = hd_slow()["y"]
        return {"y": hd_misuse()["y"]}

    with pytest.raises(ToolError) as info:
        run(body)
    assert info.value.exc_type == "aethergraph.errors.RuntimeUsageError"
    assert "would deadlock" in info.value.message


def test_tool_called_after_the_run_finished_is_rejected() -> None:
    box: dict[str, Any] = {}

    @graph_fn(name="hd_late")
    async def body() -> Any:
        box["call"] = lambda: hd_make(value=1)
        return {}

    run(body)
    # Outside any body the active-run context is gone, so the tool runs as plain Python.
    result = box["call"]()
    assert asyncio.run(result) == {"value": 1}
