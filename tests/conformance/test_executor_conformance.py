"""Executor conformance: the same graphs must behave the same on every executor.

The tools come from ``conformance_tools`` (module level, so that worker processes can serve them);
tests and tools coordinate only through ``coord``'s signals: in memory for the in-process
executors, through Redis for worker processes.
"""

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
)
from aethergraph.execution.base import Executor

from .conformance_tools import (
    Coordination,
    cf_always_fails,
    cf_block,
    cf_boom,
    cf_boom_later,
    cf_echo,
    cf_flaky,
    cf_forever,
    cf_inc,
    cf_inc_sync,
    cf_meet,
    cf_record,
    cf_slot,
    cf_slow,
    cf_slow_sync,
    cf_sum,
    cf_wait_forever,
)

# Bounded wait for a signal that has already been caused (e.g. a node's ``finally`` after its
# run was cancelled): generous for a loaded machine, short enough to fail fast when it never comes.
SETTLE = 5.0

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


def test_long_chain(executor: Executor) -> None:
    # Review D1: 400 inline sync tools in a chain overflowed the stack (executor -> scheduler ->
    # executor recursion) and the run hung. Outcomes are pulled now; no depth limit may appear.
    @graph_fn(name="cf_long_chain", outputs=["y"])
    async def chain(n: int) -> Any:
        h = cf_inc_sync(x=0)
        for _ in range(n - 1):
            h = cf_inc_sync(x=h["y"])
        return h["y"]

    assert run(chain, n=450, executor=executor) == {"y": 450}
    assert chain.last_graph.status_counts()["done"] == 450


def test_diamond_runs_each_node_once(executor: Executor, coord: Coordination) -> None:
    ran = coord.key("ran")

    @graph_fn(name="cf_diamond", outputs=["d"])
    async def diamond() -> Any:
        a = cf_record(log=ran, tag="a")
        b = cf_record(log=ran, tag="b", x=a["y"])
        c = cf_record(log=ran, tag="c", x=a["y"])
        d = cf_echo(value=[b["y"], c["y"], a])
        return {"d": d["out"]}

    out = run(diamond, executor=executor)
    assert out == {"d": ["b", "c", {"y": "a"}]}
    assert sorted(coord.items("ran")) == ["a", "b", "c"]
    assert coord.items("ran")[0] == "a"
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


def test_independent_nodes_run_concurrently(executor: Executor, coord: Coordination) -> None:
    # Every node must be running at the same time for the barrier to open (the celery cluster
    # has exactly 2 workers x 2 processes = 4 slots).
    width = 4
    arrivals, release = coord.key("arrivals"), coord.key("release")

    @graph_fn(name="cf_concurrent")
    async def concurrent() -> Any:
        return {
            f"n{i}": cf_meet(i=i, arrivals=arrivals, release=release, width=width)["ok"]
            for i in range(width)
        }

    assert run(concurrent, executor=executor) == {f"n{i}": i for i in range(width)}


def test_max_concurrency_is_respected(executor: Executor, coord: Coordination) -> None:
    running, observed = coord.key("running"), coord.key("observed")

    @graph_fn(name="cf_limited", outputs=["n"])
    async def limited() -> Any:
        hs = [cf_slot(i=i, running=running, observed=observed) for i in range(20)]
        return {"n": [h["y"] for h in hs]}

    assert run(limited, executor=executor, max_concurrency=2) == {"n": list(range(20))}
    seen = [int(n) for n in coord.items("observed")]
    assert len(seen) == 20
    assert 1 <= max(seen) <= 2


# -- failures ----------------------------------------------------------------------------------


def test_failure_raises_tool_error_and_skips_dependents(
    executor: Executor, coord: Coordination
) -> None:
    ran = coord.key("ran")

    @graph_fn(name="cf_fail", outputs=["y"])
    async def fail() -> Any:
        bad = cf_boom(x=7)
        cf_record(log=ran, tag="independent")
        downstream = cf_record(log=ran, tag="downstream", x=bad["y"])
        return {"y": cf_record(log=ran, tag="further", x=downstream["y"])["y"]}

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
    assert coord.items("ran") == ["independent"]
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


def test_fail_fast_cancels_independent_work(executor: Executor, coord: Coordination) -> None:
    started, release = coord.key("started"), coord.key("release")

    @graph_fn(name="cf_fail_fast")
    async def ff() -> Any:
        a = cf_forever(started=started, release=release)
        return {"a": a["y"], "b": cf_boom_later(started=started)["y"]}

    try:
        with pytest.raises(ToolError, match="late boom"):
            run(ff, executor=executor, fail_fast=True)
        assert ff.last_graph["cf_forever_0"].status.value == "cancelled"
    finally:
        coord.push("release")  # should cancellation have missed it, free its worker slot


# -- retries and timeouts ----------------------------------------------------------------------


def test_retries_with_backoff_then_success(executor: Executor, coord: Coordination) -> None:
    calls = coord.key("calls")
    events: list[Any] = []

    @graph_fn(name="cf_retry", outputs=["y"])
    async def retry() -> Any:
        return cf_flaky(x=5, calls=calls)["y"]

    assert run(retry, executor=executor, on_event=events.append) == {"y": 5}
    assert coord.items("calls") == ["5", "5", "5"]
    assert retry.last_graph["cf_flaky_0"].attempts == 3
    retrying = [e for e in events if isinstance(e, NodeEvent) and e.type == "retrying"]
    assert [e.attempt for e in retrying] == [1, 2]
    assert [e.retry_in for e in retrying] == [0.01, 0.02]
    assert "ConnectionError: transient 1" in (retrying[0].error or "")


def test_retries_exhausted(executor: Executor) -> None:
    @graph_fn(name="cf_exhaust", outputs=["y"])
    async def exhaust() -> Any:
        return cf_always_fails()["y"]

    with pytest.raises(ToolError) as info:
        run(exhaust, executor=executor)
    assert info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)
    assert exhaust.last_graph["cf_always_fails_0"].attempts == 3


def test_timeout_async_tool(executor: Executor, coord: Coordination) -> None:
    # Documented: an async tool is cancelled at its deadline and its ``finally`` runs.
    # Celery today: the worker's asyncio timeout races Celery's soft time limit (set to the same
    # 0.2 s); the soft limit wins, the worker reports nothing, and the NodeTimeoutError comes from
    # the client's backstop 5 s later — the assertions hold, the test just takes 5 s there.
    stopped, release = coord.key("stopped"), coord.key("release")

    @graph_fn(name="cf_timeout", outputs=["y"])
    async def timeout_graph() -> Any:
        return cf_slow(stopped=stopped, release=release)["y"]

    try:
        with pytest.raises(ToolError) as info:
            run(timeout_graph, executor=executor)
        assert info.value.exc_type == "aethergraph.errors.NodeTimeoutError"
        assert "timeout of 0.2s" in info.value.message
        assert coord.wait("stopped", SETTLE) is not None, "the tool's finally did not run"
    finally:
        coord.push("release")


def test_timeout_sync_tool(executor: Executor, coord: Coordination) -> None:
    # In-process the thread runs on in the background until released; on Celery's prefork pool
    # the timeout is Celery's soft time limit, which interrupts the tool in its worker process.
    release = coord.key("release")

    @graph_fn(name="cf_timeout_sync", outputs=["y"])
    async def timeout_graph() -> Any:
        return cf_slow_sync(release=release)["y"]

    try:
        with pytest.raises(ToolError) as info:
            run(timeout_graph, executor=executor)
        assert info.value.exc_type == "aethergraph.errors.NodeTimeoutError"
    finally:
        coord.push("release")


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_a_submitted_run(executor: Executor, coord: Coordination) -> None:
    # Documented: running async tools are cancelled, so the tool's ``finally`` signals "stopped"
    # (on Celery through the soft-limit signal sent with the revoke; the worker process lives on).
    started, stopped, release = coord.key("started"), coord.key("stopped"), coord.key("release")
    traced = threading.Event()  # set by the graph body, which runs in this process

    @graph_fn(name="cf_cancel", outputs=["y"])
    async def cancel_me() -> Any:
        first = cf_wait_forever(x=1, started=started, stopped=stopped, release=release)
        second = cf_inc(x=first["y"])
        traced.set()
        return second["y"]

    handle = submit(cancel_me, executor=executor)
    try:
        assert coord.wait("started", 30) is not None, "the node never started"
        assert traced.wait(30)
        handle.cancel()
        with pytest.raises(RunCancelledError):
            handle.result(30)
        assert coord.wait("stopped", SETTLE) is not None, "the running node was not stopped"
        statuses = {n.node_id: n.status.value for n in cancel_me.last_graph}
        assert statuses == {"cf_wait_forever_0": "cancelled", "cf_inc_0": "cancelled"}
        assert handle.status == "cancelled"
    finally:
        coord.push("release")


def test_cancelling_the_awaiting_task_cancels_the_run(
    executor: Executor, coord: Coordination
) -> None:
    # Same expectation as test_cancel_a_submitted_run.
    started, stopped, release = coord.key("started"), coord.key("stopped"), coord.key("release")

    @graph_fn(name="cf_cancel_task", outputs=["y"])
    async def blocked() -> Any:
        return cf_block(started=started, stopped=stopped, release=release)["y"]

    async def main() -> None:
        from aethergraph import run_async

        task = asyncio.ensure_future(run_async(blocked, executor=executor))
        assert await asyncio.to_thread(coord.wait, "started", 30) is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        assert coord.wait("stopped", SETTLE) is not None, "the running node was not stopped"
        assert blocked.last_graph["cf_block_0"].status.value == "cancelled"
    finally:
        coord.push("release")


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
