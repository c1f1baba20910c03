"""The run as one concept: options, executor start, pulled outcomes, internal errors, memory."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import pytest

from aethergraph import (
    LocalExecutor,
    ToolError,
    graph_fn,
    run,
    run_async,
    submit,
    tool,
)
from aethergraph.errors import ConfigurationError, GraphInputError, InternalError
from aethergraph.execution.base import DoneCallback, NodeJob, NodeOutcome
from aethergraph.scheduling import gc_pacing
from aethergraph.scheduling.run import RunOptions
from aethergraph.services.builtins.kv import InMemoryKV
from aethergraph.services.runtime.registry import current_services


class Value:
    """A tool output that can be watched with a weak reference."""

    def __init__(self, n: int) -> None:
        self.n = n


@tool(outputs=["y"])
def rn_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["v"])
def rn_make(n: int, prev: Any = None) -> dict[str, Any]:
    return {"v": Value(n)}


# -- outcomes are pulled: no recursion however long an inline chain is ----------------------


def test_a_long_chain_of_inline_sync_tools_completes() -> None:
    """Each outcome dispatches the next node; with inline sync tools that used to recurse
    once per node (≥ 400 nodes overflowed the stack and the run hung)."""

    @graph_fn(name="rn_chain", outputs=["y"])
    async def chain(n: int) -> Any:
        ref: Any = 0
        for _ in range(n):
            ref = rn_inc(x=ref)["y"]
        return {"y": ref}

    assert run(chain, n=2000, executor=LocalExecutor(sync_tools="inline")) == {"y": 2000}


class _BrokenExecutor(LocalExecutor):
    """An executor with a bug: it reports success without outputs."""

    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        for job in jobs:
            on_done(job, NodeOutcome(outputs=None))


def test_an_internal_error_fails_the_run_with_its_traceback_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @graph_fn(name="rn_broken", outputs=["y"])
    async def body() -> Any:
        a = rn_inc(x=1)
        return {"y": rn_inc(x=a["y"])["y"]}  # reading a's (missing) outputs breaks

    with caplog.at_level(logging.ERROR, logger="aethergraph"), pytest.raises(InternalError) as err:
        run(body, executor=_BrokenExecutor())
    assert "internal error" in str(err.value)
    assert "Traceback" in str(err.value)
    assert any("internal error in run" in r.getMessage() and r.exc_info for r in caplog.records)


# -- an executor is started once however many runs share it ----------------------------------


class _CountingExecutor(LocalExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        await asyncio.sleep(0.05)  # a start that takes a while: concurrent runs overlap it


def test_concurrent_runs_start_a_shared_executor_once() -> None:
    executor = _CountingExecutor()

    @graph_fn(name="rn_shared", outputs=["y"])
    async def body(x: int) -> Any:
        return {"y": rn_inc(x=x)["y"]}

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(run_async(body, x=i, executor=executor) for i in range(5)))

    assert asyncio.run(main()) == [{"y": i + 1} for i in range(5)]
    assert executor.starts == 1


# -- fail_fast raises the first failure, never the cancellation it caused ---------------------


@tool(outputs=["y"])
def rn_fail(x: int) -> dict[str, Any]:
    raise RuntimeError(f"boom {x}")


@tool(outputs=["y"])
async def rn_slow(x: int) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"y": x}


def test_fail_fast_raises_the_tool_error() -> None:
    @graph_fn(name="rn_ff")
    async def body() -> Any:
        bad = rn_fail(x=0)
        outs = [rn_slow(x=i)["y"] for i in range(20)]
        await bad  # the body sees the failure, later calls see the cancellation
        return {"outs": outs}

    for _ in range(20):
        with pytest.raises(ToolError) as err:
            run(body, fail_fast=True)
        assert err.value.tool == "rn_fail"


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": True},
        {"fail_fast": "yes"},
        {"on_event": 3},
        {"run_id": ""},
        {"executor": 3},
    ],
)
def test_bad_run_options_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RunOptions(**kwargs)


def test_graph_inputs_named_like_run_options_go_in_the_mapping() -> None:
    @graph_fn(name="rn_opts", outputs=["out"])
    async def body(executor: str, run_id: int) -> Any:
        return {"out": f"{executor}-{run_id}"}

    assert run(body, {"executor": "e", "run_id": 7}) == {"out": "e-7"}
    # options and same-named inputs side by side: the option is an option
    assert run(body, {"executor": "e", "run_id": 8}, run_id="r1") == {"out": "e-8"}
    assert body.last_graph is not None
    assert body.last_graph.run_id == "r1"

    @graph_fn(name="rn_twice", outputs=["x"])
    async def twice(x: int) -> Any:
        return {"x": x}

    with pytest.raises(GraphInputError, match="twice"):
        run(twice, {"x": 1}, x=2)


# -- memory: values are released as soon as nothing needs them -------------------------------


def test_last_graph_keeps_structure_not_values() -> None:
    """After a 50-node chain only the returned value is alive, though last_graph is kept."""
    alive: list[weakref.ref[Value]] = []

    @tool(outputs=["v"])
    def rn_track(n: int, prev: Any = None) -> dict[str, Any]:
        value = Value(n)
        alive.append(weakref.ref(value))
        return {"v": value}

    @graph_fn(name="rn_mem_chain", outputs=["last"])
    async def body() -> Any:
        prev: Any = None
        for i in range(50):
            prev = rn_track(n=i, prev=prev)["v"]
        return {"last": prev}

    out = run(body, executor=LocalExecutor(sync_tools="inline"))
    assert out["last"].n == 49
    graph = body.last_graph
    assert graph is not None
    assert len(graph) == 50
    assert all(node.status == "done" and node.attempts == 1 for node in graph)
    gc.collect()
    assert [ref() is not None for ref in alive] == [False] * 49 + [True]
    del out
    gc.collect()
    assert alive[-1]() is None  # the graph (still alive here) pins no value at all
    assert body.last_graph is graph


def test_a_finished_run_leaves_no_reference_cycle() -> None:
    """The run's state (its scheduler, node table, node states) is freed by reference counting the
    moment the run is dropped, not later by the cyclic collector.

    "Dropped" includes the other threads' side: the tool thread that reported the last outcome
    and the runtime-loop drain that finished the run may still be returning (their frames hold
    the scheduler's bound methods for a moment) when ``run()`` does. So the test waits, with the
    collector off, for the scheduler's finalizer: only reference counting can fire it then, and a
    cycle never would."""
    freed: list[threading.Event] = []

    @tool(outputs=["y"])
    def rn_leaf(x: int) -> dict[str, Any]:
        return {"y": x}

    @graph_fn(name="rn_no_cycle", outputs=["n"])
    async def body() -> Any:
        handles = [rn_leaf(x=i) for i in range(200)]
        event = threading.Event()
        weakref.finalize(handles[0]._run, event.set)  # the run's scheduler
        freed.append(event)
        return {"n": len(handles)}

    run(body)  # warm: imports and first-run caches are not this test's business
    freed.clear()
    gc.collect()
    gc.disable()
    try:
        assert run(body) == {"n": 200}
        assert freed[0].wait(10), "the finished run's scheduler was not freed without the collector"
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_an_intermediate_value_is_released_while_the_run_goes_on() -> None:
    alive: dict[str, Any] = {}
    proceed = threading.Event()

    @tool(outputs=["v"])
    def rn_watch(n: int, prev: Any = None) -> dict[str, Any]:
        value = Value(n)
        alive[f"v{n}"] = weakref.ref(value)
        return {"v": value}

    @tool(outputs=["done"])
    def rn_gate() -> dict[str, Any]:
        proceed.wait(30)
        return {"done": True}

    @graph_fn(name="rn_mem_release", outputs=["n"])
    async def body() -> Any:
        second = rn_watch(n=1, prev=rn_watch(n=0)["v"])  # v0 is consumed by the second node
        n = (await second["v"]).n
        gc.collect()
        released = alive["v0"]() is None  # nothing can need v0 any more
        proceed.set()
        await rn_gate()["done"]
        return {"n": n if released else -1}

    assert run(body) == {"n": 1}


def test_configure_builtins_accepts_an_empty_store() -> None:
    """An empty InMemoryKV is falsy; configuring it must still replace the kv backend."""
    services = current_services()
    before = services.builtins.kv
    fresh = InMemoryKV()
    try:
        services.configure_builtins(kv=fresh)
        assert services.builtins.kv is fresh
    finally:
        services.configure_builtins(kv=before)


def test_gc_pacing_stays_balanced_when_the_setting_changes_mid_run() -> None:
    counted = gc_pacing.run_started()
    gc_pacing.run_finished(counted)
    assert gc_pacing._active == 0


def test_submit_handle_sees_the_run() -> None:
    @graph_fn(name="rn_submit", outputs=["y"])
    async def body() -> Any:
        return {"y": rn_inc(x=1)["y"]}

    handle = submit(body)
    assert handle.result(30) == {"y": 2}
    assert handle.status == "done"
    assert handle.graph is not None
    assert len(handle.graph) == 1


def test_graph_spec_and_service_usage_errors_keep_their_builtin_bases() -> None:
    from aethergraph.errors import GraphSpecError, ServiceUsageError
    from aethergraph.graph.task_graph import TaskGraph, TaskNode

    graph = TaskGraph("g")
    graph.add_node(TaskNode("a_0", "a"))
    with pytest.raises(GraphSpecError, match="already has"):
        graph.add_node(TaskNode("a_0", "a"))
    with pytest.raises(ValueError, match="not in the graph"):
        graph.add_node(TaskNode("b_0", "b", deps=("zz",)))
    assert issubclass(ServiceUsageError, TypeError)
    assert issubclass(ServiceUsageError, ValueError)
