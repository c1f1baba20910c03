"""LocalExecutor specifics: the thread lane for sync tools, its timeouts and cancellation."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aethergraph import LocalExecutor, RunCancelledError, ToolError, graph_fn, run, submit, tool
from aethergraph.errors import ConfigurationError
from aethergraph.settings import reload_settings


def test_timeout_clock_starts_when_the_sync_tool_starts() -> None:
    """With one thread, a queued tool must not spend its timeout waiting for the thread."""
    release = threading.Event()
    first_started = threading.Event()

    @tool(outputs=["y"])
    def le_hold() -> dict[str, Any]:
        first_started.set()
        release.wait(30)
        return {"y": 0}

    @tool(outputs=["y"], timeout=0.5)
    def le_quick() -> dict[str, Any]:
        return {"y": 1}

    @graph_fn(name="le_serial_g")
    async def body() -> Any:
        return {"a": le_hold()["y"], "b": le_quick()["y"]}  # le_quick queues behind le_hold

    handle = submit(body, executor=LocalExecutor(max_threads=1))
    assert first_started.wait(30)
    # Keep the only thread busy for longer than le_quick's timeout: time spent queued must
    # not count against it. (A deliberate delay: the behaviour under test is about time.)
    threading.Event().wait(0.8)
    release.set()
    assert handle.result(30) == {"a": 0, "b": 1}


def test_cancel_drops_queued_sync_jobs() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    @tool(outputs=["y"])
    def le_block(i: int) -> dict[str, Any]:
        ran.append(i)
        started.set()
        release.wait(30)
        return {"y": i}

    @graph_fn(name="le_cancel_g")
    async def body() -> Any:
        return {f"n{i}": le_block(i=i)["y"] for i in range(3)}

    handle = submit(body, executor=LocalExecutor(max_threads=1))
    assert started.wait(30)
    handle.cancel()
    with pytest.raises(RunCancelledError):
        handle.result(30)
    release.set()
    # the two queued jobs were dropped; give the single thread a chance to (not) run them
    follow = run(_probe_graph(), executor=LocalExecutor(max_threads=1))
    assert follow == {"ok": True}
    assert ran == [0]


def _probe_graph() -> Any:
    @tool(outputs=["ok"])
    def le_probe() -> dict[str, Any]:
        return {"ok": True}

    @graph_fn(name="le_probe_g", outputs=["ok"])
    async def probe() -> Any:
        return le_probe()["ok"]

    return probe


def test_a_chain_of_sync_tools_stays_on_one_thread() -> None:
    """The thread that finishes a hop is free for the next one; no second thread is started.

    A chain's next node is dispatched while the finishing thread is still reporting its outcome.
    Counting that thread as busy started a second thread, then a third, and the chain hopped
    between them, each woken cold.
    """
    names: list[str] = []

    @tool(outputs=["y"])
    def le_where(x: int) -> dict[str, Any]:
        names.append(threading.current_thread().name)
        return {"y": x + 1}

    @graph_fn(name="le_chain_g", outputs=["y"])
    async def body() -> Any:
        h = le_where(x=0)
        for _ in range(99):
            h = le_where(x=h["y"])
        return {"y": h["y"]}

    executor = LocalExecutor()
    for _ in range(20):  # one run's last hop and the next run's first meet on the same thread
        assert run(body, executor=executor) == {"y": 100}
    assert len(names) == 2000
    assert set(names) == {"aethergraph-tool-0"}


def test_blocking_sync_tools_run_side_by_side_with_threads_idle() -> None:
    """A burst of blocking tools gets a thread each, also when a pool of threads is idle.

    Each tool waits at a barrier for all the others: run with fewer threads than tools, the
    barrier times out and the run fails.
    """
    barrier = threading.Barrier(6, timeout=30)

    @tool(outputs=["y"])
    def le_meet(i: int) -> dict[str, Any]:
        barrier.wait()
        return {"y": i}

    @tool(outputs=["y"])
    def le_quick(i: int) -> dict[str, Any]:
        return {"y": i}

    @graph_fn(name="le_warm_g", outputs=["n"])
    async def warm() -> Any:
        return {"n": len([le_quick(i=i) for i in range(50)])}

    @graph_fn(name="le_meet_g", outputs=["n"])
    async def meet() -> Any:
        return {"n": sum([le_meet(i=i)["y"] for i in range(6)])}

    executor = LocalExecutor(max_threads=8)
    assert run(warm, executor=executor) == {"n": 50}
    for _ in range(3):
        assert run(meet, executor=executor) == {"n": 15}


def test_invalid_options() -> None:
    with pytest.raises(ConfigurationError):
        LocalExecutor(sync_tools="process")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LocalExecutor(max_threads=0)


def test_default_max_concurrency_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    @tool(outputs=["y"])
    async def le_count(i: int) -> dict[str, Any]:
        import asyncio

        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        for _ in range(3):
            await asyncio.sleep(0)
        with lock:
            state["now"] -= 1
        return {"y": i}

    @graph_fn(name="le_limit_g")
    async def body() -> Any:
        return {f"n{i}": le_count(i=i)["y"] for i in range(10)}

    monkeypatch.setenv("AETHERGRAPH_MAX_CONCURRENCY", "1")
    reload_settings()
    try:
        assert len(run(body)) == 10
    finally:
        monkeypatch.delenv("AETHERGRAPH_MAX_CONCURRENCY")
        reload_settings()
    assert state["max"] == 1


def test_skipped_node_error_says_skipped() -> None:
    @tool(outputs=["y"])
    def le_bad() -> dict[str, Any]:
        raise ValueError("bad input")

    @tool(outputs=["y"])
    def le_after(x: int) -> dict[str, Any]:
        return {"y": x}

    seen: list[str] = []

    @graph_fn(name="le_skip_g")
    async def body() -> Any:
        after = le_after(x=le_bad()["y"])
        try:
            await after
        except ToolError as exc:
            seen.append(str(exc))
        return {}

    with pytest.raises(ToolError):
        run(body)
    assert seen == [
        "node 'le_after_0' (tool 'le_after') was skipped because upstream node 'le_bad_0' "
        "failed: ValueError: bad input"
    ]
