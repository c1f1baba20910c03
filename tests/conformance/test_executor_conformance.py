"""Executor conformance: the same graphs must behave the same on every executor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from aethergraph import (
    NodeEvent,
    RunCancelledError,
    RunEvent,
    ToolError,
    graph_fn,
    run,
    submit,
    tool,
)
from aethergraph.execution.base import Executor

# -- tools -------------------------------------------------------------------------------------


@tool(outputs=["y"])
async def cf_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["y"])
def cf_inc_sync(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["total"])
def cf_sum(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool(outputs=["out"])
async def cf_echo(value: Any) -> dict[str, Any]:
    return {"out": value}


RAN: list[str] = []


@tool(outputs=["y"])
async def cf_record(tag: str, x: Any = None) -> dict[str, Any]:
    RAN.append(tag)
    return {"y": tag}


@tool(outputs=["y"])
async def cf_boom(x: int = 0) -> dict[str, Any]:
    raise ValueError(f"boom {x}")


# -- shapes ------------------------------------------------------------------------------------


def test_fan_out_and_in(executor: Executor) -> None:
    @graph_fn(name="cf_fan", outputs=["total"])
    async def fan(n: int) -> Any:
        ys = [cf_inc(x=i)["y"] for i in range(n)] + [cf_inc_sync(x=i)["y"] for i in range(n)]
        return {"total": cf_sum(xs=ys)["total"]}

    n = 200
    assert run(fan, n=n, executor=executor) == {"total": 2 * sum(range(1, n + 1))}
    graph = fan.last_graph
    assert len(graph) == 2 * n + 1
    assert graph.status_counts()["done"] == 2 * n + 1
    assert len(graph["cf_sum_0"].deps) == 2 * n


def test_chain(executor: Executor) -> None:
    @graph_fn(name="cf_chain", outputs=["y"])
    async def chain(n: int) -> Any:
        h = cf_inc(x=0)
        for _ in range(n - 1):
            h = cf_inc_sync(x=h["y"])
        return h["y"]

    assert run(chain, n=50, executor=executor) == {"y": 50}
    graph = chain.last_graph
    assert len(graph.edges) == 49
    order = graph.topological_order()
    assert order[0] == "cf_inc_0"


def test_diamond_runs_each_node_once(executor: Executor) -> None:
    RAN.clear()

    @graph_fn(name="cf_diamond", outputs=["d"])
    async def diamond() -> Any:
        a = cf_record(tag="a")
        b = cf_record(tag="b", x=a["y"])
        c = cf_record(tag="c", x=a["y"])
        d = cf_echo(value=[b["y"], c["y"], a])
        return {"d": d["out"]}

    out = run(diamond, executor=executor)
    assert out == {"d": ["b", "c", {"y": "a"}]}
    assert sorted(RAN) == ["a", "b", "c"]
    assert RAN[0] == "a"
    assert set(diamond.last_graph["cf_echo_0"].deps) == {
        "cf_record_0",
        "cf_record_1",
        "cf_record_2",
    }


def test_refs_nested_in_containers_arrive_as_plain_values(executor: Executor) -> None:
    @graph_fn(name="cf_nested", outputs=["out"])
    async def nested() -> Any:
        a = cf_inc(x=1)
        b = cf_inc(x=10)
        payload = {"list": [a["y"], b["y"]], "tuple": (a["y"], 3), "deep": {"h": b}, "n": None}
        return cf_echo(value=payload)["out"]

    out = run(nested, executor=executor)["out"]
    assert out == {"list": [2, 11], "tuple": (2, 3), "deep": {"h": {"y": 11}}, "n": None}


def test_independent_nodes_run_concurrently(executor: Executor) -> None:
    width = 4
    barrier = threading.Barrier(width, timeout=30)

    @tool(outputs=["ok"])
    async def cf_meet(i: int) -> dict[str, Any]:
        # Every node must be running at the same time for the barrier to open.
        await asyncio.to_thread(barrier.wait)
        return {"ok": i}

    @graph_fn(name="cf_concurrent")
    async def concurrent() -> Any:
        return {f"n{i}": cf_meet(i=i)["ok"] for i in range(width)}

    assert run(concurrent, executor=executor) == {f"n{i}": i for i in range(width)}


def test_max_concurrency_is_respected(executor: Executor) -> None:
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    @tool(outputs=["y"])
    async def cf_slot(i: int) -> dict[str, Any]:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        for _ in range(5):
            await asyncio.sleep(0)
        with lock:
            state["now"] -= 1
        return {"y": i}

    @graph_fn(name="cf_limited", outputs=["n"])
    async def limited() -> Any:
        hs = [cf_slot(i=i) for i in range(20)]
        return {"n": [h["y"] for h in hs]}

    assert run(limited, executor=executor, max_concurrency=2) == {"n": list(range(20))}
    assert 1 <= state["max"] <= 2


# -- failures ----------------------------------------------------------------------------------


def test_failure_raises_tool_error_and_skips_dependents(executor: Executor) -> None:
    RAN.clear()

    @graph_fn(name="cf_fail", outputs=["y"])
    async def fail() -> Any:
        bad = cf_boom(x=7)
        cf_record(tag="independent")
        downstream = cf_record(tag="downstream", x=bad["y"])
        return {"y": cf_record(tag="further", x=downstream["y"])["y"]}

    with pytest.raises(ToolError) as info:
        run(fail, executor=executor)
    err = info.value
    assert err.node_id == "cf_boom_0"
    assert err.tool == "cf_boom"
    assert err.exc_type == "ValueError"
    assert err.message == "boom 7"
    assert "boom 7" in err.traceback
    assert "raise ValueError" in err.traceback
    assert "cf_boom_0" in str(err)
    assert RAN == ["independent"]
    statuses = {n.node_id: n.status.value for n in fail.last_graph}
    assert statuses == {
        "cf_boom_0": "failed",
        "cf_record_0": "done",
        "cf_record_1": "skipped",
        "cf_record_2": "skipped",
    }


def test_failed_value_raises_where_used_in_the_body(executor: Executor) -> None:
    seen: dict[str, Any] = {}

    @graph_fn(name="cf_fail_used")
    async def used() -> Any:
        bad = cf_boom(x=1)
        try:
            await bad
        except ToolError as exc:
            seen["await"] = exc.node_id
        try:
            f"{bad['y']}"
        except ToolError as exc:
            seen["fstring"] = exc.node_id
        return {}

    with pytest.raises(ToolError):
        run(used, executor=executor)
    assert seen == {"await": "cf_boom_0", "fstring": "cf_boom_0"}


def test_fail_fast_cancels_independent_work(executor: Executor) -> None:
    started = threading.Event()

    @tool(outputs=["y"])
    async def cf_forever() -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {"y": 1}

    @tool(outputs=["y"])
    async def cf_boom_later() -> dict[str, Any]:
        await asyncio.to_thread(started.wait, 30)
        raise RuntimeError("late boom")

    @graph_fn(name="cf_fail_fast")
    async def ff() -> Any:
        return {"a": cf_forever()["y"], "b": cf_boom_later()["y"]}

    with pytest.raises(ToolError, match="late boom"):
        run(ff, executor=executor, fail_fast=True)
    assert ff.last_graph["cf_forever_0"].status.value == "cancelled"


# -- retries and timeouts ----------------------------------------------------------------------


def test_retries_with_backoff_then_success(executor: Executor) -> None:
    calls: list[int] = []

    @tool(outputs=["y"], retries=3, retry_backoff=0.01, retry_jitter=False)
    def cf_flaky(x: int) -> dict[str, Any]:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError(f"transient {len(calls)}")
        return {"y": x}

    events: list[Any] = []

    @graph_fn(name="cf_retry", outputs=["y"])
    async def retry() -> Any:
        return cf_flaky(x=5)["y"]

    assert run(retry, executor=executor, on_event=events.append) == {"y": 5}
    assert len(calls) == 3
    assert retry.last_graph["cf_flaky_0"].attempts == 3
    retrying = [e for e in events if isinstance(e, NodeEvent) and e.type == "retrying"]
    assert [e.attempt for e in retrying] == [1, 2]
    assert [e.retry_in for e in retrying] == [0.01, 0.02]
    assert "ConnectionError: transient 1" in (retrying[0].error or "")


def test_retries_exhausted(executor: Executor) -> None:
    @tool(outputs=["y"], retries=2, retry_backoff=0.0)
    async def cf_always_fails() -> dict[str, Any]:
        raise KeyError("nope")

    @graph_fn(name="cf_exhaust", outputs=["y"])
    async def exhaust() -> Any:
        return cf_always_fails()["y"]

    with pytest.raises(ToolError) as info:
        run(exhaust, executor=executor)
    assert info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)
    assert exhaust.last_graph["cf_always_fails_0"].attempts == 3


def test_timeout_async_tool(executor: Executor) -> None:
    cancelled = threading.Event()

    @tool(outputs=["y"], timeout=0.2)
    async def cf_slow() -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return {"y": 1}

    @graph_fn(name="cf_timeout", outputs=["y"])
    async def timeout_graph() -> Any:
        return cf_slow()["y"]

    with pytest.raises(ToolError) as info:
        run(timeout_graph, executor=executor)
    assert info.value.exc_type == "aethergraph.errors.NodeTimeoutError"
    assert "timeout of 0.2s" in info.value.message
    assert cancelled.wait(10)


def test_timeout_sync_tool(executor: Executor) -> None:
    release = threading.Event()

    @tool(outputs=["y"], timeout=0.2)
    def cf_slow_sync() -> dict[str, Any]:
        release.wait(30)
        return {"y": 1}

    @graph_fn(name="cf_timeout_sync", outputs=["y"])
    async def timeout_graph() -> Any:
        return cf_slow_sync()["y"]

    try:
        with pytest.raises(ToolError) as info:
            run(timeout_graph, executor=executor)
        assert info.value.exc_type == "aethergraph.errors.NodeTimeoutError"
    finally:
        release.set()


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_a_submitted_run(executor: Executor) -> None:
    started = threading.Event()
    stopped = threading.Event()

    @tool(outputs=["y"])
    async def cf_wait_forever(x: int) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {"y": x}

    traced = threading.Event()

    @graph_fn(name="cf_cancel", outputs=["y"])
    async def cancel_me() -> Any:
        first = cf_wait_forever(x=1)
        second = cf_inc(x=first["y"])
        traced.set()
        return second["y"]

    handle = submit(cancel_me, executor=executor)
    assert started.wait(30)
    assert traced.wait(30)
    handle.cancel()
    with pytest.raises(RunCancelledError):
        handle.result(30)
    assert stopped.wait(30), "the running node was not stopped"
    statuses = {n.node_id: n.status.value for n in cancel_me.last_graph}
    assert statuses == {"cf_wait_forever_0": "cancelled", "cf_inc_0": "cancelled"}
    assert handle.status == "cancelled"


def test_cancelling_the_awaiting_task_cancels_the_run(executor: Executor) -> None:
    started = threading.Event()
    stopped = threading.Event()

    @tool(outputs=["y"])
    async def cf_block() -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {"y": 1}

    @graph_fn(name="cf_cancel_task", outputs=["y"])
    async def blocked() -> Any:
        return cf_block()["y"]

    async def main() -> None:
        from aethergraph import run_async

        task = asyncio.ensure_future(run_async(blocked, executor=executor))
        await asyncio.to_thread(started.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stopped.wait(30)
    assert blocked.last_graph["cf_block_0"].status.value == "cancelled"


# -- events ------------------------------------------------------------------------------------


def test_events_follow_each_node(executor: Executor) -> None:
    events: list[Any] = []

    @graph_fn(name="cf_events", outputs=["y"])
    async def evented() -> Any:
        a = cf_inc(x=1)
        return cf_inc_sync(x=a["y"])["y"]

    assert run(evented, executor=executor, on_event=events.append) == {"y": 3}
    run_events = [e for e in events if isinstance(e, RunEvent)]
    assert [e.type for e in run_events] == ["run_started", "run_finished"]
    assert run_events[-1].status == "done"
    assert run_events[-1].counts["done"] == 2
    per_node: dict[str, list[str]] = {}
    for e in events:
        if isinstance(e, NodeEvent):
            per_node.setdefault(e.node_id, []).append(e.type)
            assert e.run_id == run_events[0].run_id
    assert per_node == {
        "cf_inc_0": ["added", "started", "done"],
        "cf_inc_sync_0": ["added", "started", "done"],
    }
    done = [e for e in events if isinstance(e, NodeEvent) and e.type == "done"]
    assert all(e.duration is not None for e in done)
    assert all((e.duration or 0) >= 0 for e in done)


def test_global_subscription_and_failure_events(executor: Executor) -> None:
    from aethergraph import subscribe

    events: list[Any] = []
    unsubscribe = subscribe(events.append)
    try:

        @graph_fn(name="cf_events_fail")
        async def failing() -> Any:
            bad = cf_boom()
            return {"y": cf_inc(x=bad["y"])["y"]}

        with pytest.raises(ToolError):
            run(failing, executor=executor)
    finally:
        unsubscribe()
    kinds = {(e.node_id, e.type) for e in events if isinstance(e, NodeEvent)}
    assert ("cf_boom_0", "failed") in kinds
    assert ("cf_inc_0", "skipped") in kinds
    finished = [e for e in events if isinstance(e, RunEvent) and e.type == "run_finished"]
    assert finished[-1].status == "failed"
    assert "cf_boom_0" in (finished[-1].error or "")
    count = len(events)
    run(failing.__class__("cf_after_unsub", lambda: {}), executor=executor)
    assert len(events) == count, "unsubscribed listener was still called"
