"""The Celery executor with real worker processes (a LocalCluster on the test Redis)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from typing import Any

import pytest
import redis
from celery_tools import (
    Point,
    d_ainc,
    d_big,
    d_block,
    d_boom,
    d_echo,
    d_flaky,
    d_inc,
    d_size,
    d_slow_async,
    d_sum,
    d_types,
    d_use_service,
    d_whoami,
)
from polling import wait_until

from aethergraph import RunCancelledError, ToolError, graph_fn, run, submit, tool
from aethergraph.cluster import LocalCluster
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.services.builtins.channel import RecordingChannelBackend
from aethergraph.services.runtime.registry import current_services


@graph_fn(name="dist_fan", outputs=["total"])
async def dist_fan(n: int) -> Any:
    ys = [d_inc(x=i)["y"] for i in range(n)] + [d_ainc(x=i)["y"] for i in range(n)]
    return {"total": d_sum(xs=ys)["total"]}


@graph_fn(name="dist_chain", outputs=["y"])
async def dist_chain(n: int) -> Any:
    h = d_ainc(x=0)
    for _ in range(n - 1):
        h = d_inc(x=h["y"])
    return h["y"]


def test_fan_out_fan_in_and_chain(cluster: LocalCluster) -> None:
    assert cluster.run(dist_fan, n=40) == {"total": 2 * sum(range(1, 41))}
    assert cluster.run(dist_chain, n=20) == {"y": 20}
    assert dist_chain.last_graph.status_counts()["done"] == 20


def test_diamond_and_nested_refs(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_diamond", outputs=["d"])
    async def diamond() -> Any:
        a = d_inc(x=1)
        b = d_inc(x=a["y"])
        c = d_ainc(x=a["y"])
        return {"d": d_echo(value={"pair": [b["y"], c["y"]], "whole": a, "t": (1, 2)})["out"]}

    out = cluster.run(diamond)["d"]
    assert out == {"pair": [3, 3], "whole": {"y": 2}, "t": (1, 2)}


def test_a_class_no_signature_names_is_refused_by_the_worker(cluster: LocalCluster) -> None:
    from celery_tools import Unlisted

    @graph_fn(name="dist_unlisted")
    async def unlisted() -> Any:
        return {"out": d_echo(value=Unlisted(v=1))["out"]}

    with pytest.raises(ToolError) as info:
        cluster.run(unlisted)
    assert info.value.exc_type == "aethergraph.errors.CodecError"
    assert "celery_tools:Unlisted" in info.value.message
    assert "signature does not name it" in info.value.message
    assert unlisted.last_graph.status_counts()["failed"] == 1


def test_rich_types_round_trip_between_tools(cluster: LocalCluster) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    @graph_fn(name="dist_types")
    async def types() -> Any:
        out = d_types(p=Point(x=1.5, y=2), when=when, raw=b"\x00\x01", pair=(1, 2))
        again = d_echo(value=out["p"])
        return {"p": again["out"], "when": out["when"], "raw": out["raw"], "pair": out["pair"]}

    assert cluster.run(types) == {
        "p": Point(x=3.0, y=2),
        "when": when + dt.timedelta(days=1),
        "raw": b"\x00\x01\x00\x01",
        "pair": (2, 1),
    }


def test_remote_failure_is_a_tool_error_with_the_remote_traceback(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_fail")
    async def fail() -> Any:
        bad = d_boom(x=3)
        return {"y": d_inc(x=bad["y"])["y"], "ok": d_inc(x=1)["y"]}

    with pytest.raises(ToolError) as info:
        cluster.run(fail)
    err = info.value
    assert (err.node_id, err.exc_type, err.message) == ("d_boom_0", "ValueError", "remote boom 3")
    assert "celery_tools.py" in err.traceback
    statuses = {n.node_id: n.status.value for n in fail.last_graph}
    assert statuses == {"d_boom_0": "failed", "d_inc_0": "skipped", "d_inc_1": "done"}


def test_retries_with_backoff_across_processes(cluster: LocalCluster) -> None:
    key = f"{cluster.namespace}:test:flaky:{uuid.uuid4().hex}"

    @graph_fn(name="dist_retry", outputs=["y"])
    async def retry() -> Any:
        return d_flaky(key=key, fail_times=2)["y"]

    assert cluster.run(retry) == {"y": 3}
    assert retry.last_graph["d_flaky_0"].attempts == 3


def test_timeout_on_the_worker(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_timeout", outputs=["y"])
    async def slow() -> Any:
        return d_slow_async()["y"]

    with pytest.raises(ToolError) as info:
        cluster.run(slow)
    assert info.value.exc_type == "aethergraph.errors.NodeTimeoutError"


def test_unencodable_argument_fails_at_submit_naming_node_and_argument(
    cluster: LocalCluster,
) -> None:
    @graph_fn(name="dist_bad_arg")
    async def bad() -> Any:
        return {"y": d_echo(value={"lock": threading.Lock()})["out"]}

    with pytest.raises(ToolError) as info:
        cluster.run(bad)
    assert info.value.node_id == "d_echo_0"
    assert "node 'd_echo_0' argument" in info.value.message
    assert "lock" in info.value.message


def test_large_value_passes_between_tools_without_the_client(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_payload", outputs=["size"])
    async def payload() -> Any:
        return d_size(blob=d_big(n=10_000_000)["blob"])["size"]

    executor = cluster.executor
    before = dict(executor.stats)
    assert cluster.run(payload) == {"size": 10_000_000}
    received = executor.stats["result_bytes"] - before["result_bytes"]
    published = executor.stats["published_bytes"] - before["published_bytes"]
    assert received < 10_000, received
    assert published < 10_000, published


def test_large_value_reaches_the_body_when_used(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_payload_used")
    async def used() -> Any:
        big = d_big(n=1_000_000)
        blob = await big["blob"]
        return {"n": len(blob), "same": d_size(blob=big["blob"])["head"] == blob[:16]}

    assert cluster.run(used) == {"n": 1_000_000, "same": True}


def test_context_ids_channel_logs_and_memory_reach_the_client(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    recording = RecordingChannelBackend()
    services = current_services()
    previous = services.builtins.channel
    services.configure_builtins(channel=recording)
    seen: dict[str, Any] = {}

    @graph_fn(name="dist_ctx")
    async def ctx_graph(*, context: Any) -> Any:
        who = d_whoami()
        seen["run_id"] = context.run_id
        out = await who
        seen["memory"] = [e.data for e in await context.memory().recent(kind="visit")]
        return out

    try:
        with caplog.at_level("INFO", logger="aethergraph.node"):
            out = cluster.run(ctx_graph)
            texts = wait_until(lambda: [m for m in recording.messages if m.kind == "text"], "text")
            logs = wait_until(
                lambda: [r for r in caplog.records if "log line from" in r.getMessage()], "log"
            )
    finally:
        services.configure_builtins(channel=previous)
    assert out["ids"] == [seen["run_id"], "dist_ctx", "d_whoami_0"]
    assert out["pid"] != os.getpid()
    assert texts[0].payload == "hello from d_whoami_0"
    assert (texts[0].run_id, texts[0].node_id) == (seen["run_id"], "d_whoami_0")
    assert logs[0].run_id == seen["run_id"]
    assert seen["memory"] == [{"node": "d_whoami_0"}]


def test_workers_build_their_own_services(cluster: LocalCluster) -> None:
    @graph_fn(name="dist_services")
    async def svc() -> Any:
        return {f"n{i}": d_use_service() for i in range(6)}

    out = cluster.run(svc)
    for value in out.values():
        assert value["started"] is True
        assert value["pid"] != os.getpid()
        assert value["calls"] >= 1


def test_unserved_tool_fails_fast_with_a_clear_error(cluster: LocalCluster) -> None:
    @tool(outputs=["y"])
    def d_nobody_serves_this() -> dict[str, Any]:
        return {"y": 1}

    @graph_fn(name="dist_unserved", outputs=["y"])
    async def unserved() -> Any:
        return d_nobody_serves_this()["y"]

    settings = cluster.executor.settings.model_copy(update={"worker_wait": 0.5})
    executor = CeleryExecutor(settings=settings)
    with pytest.raises(ToolError) as info:
        run(unserved, executor=executor)
    assert "no live worker serves tool 'd_nobody_serves_this'" in info.value.message
    assert "aethergraph worker --tools" in info.value.message


def test_cancel_revokes_running_and_queued_tasks(cluster: LocalCluster) -> None:
    started_key = f"{cluster.namespace}:test:started:{uuid.uuid4().hex}"
    release_key = f"{cluster.namespace}:test:release:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

    @graph_fn(name="dist_cancel")
    async def cancel_me() -> Any:
        first = d_block(key=started_key, release=release_key)
        return {"y": d_inc(x=first["y"])["y"]}

    handle = submit(cancel_me, executor=cluster.executor)
    try:
        assert client.blpop([started_key], timeout=30) is not None
        handle.cancel()
        with pytest.raises(RunCancelledError):
            handle.result(30)
        statuses = {n.node_id: n.status.value for n in cancel_me.last_graph}
        assert statuses == {"d_block_0": "cancelled", "d_inc_0": "cancelled"}
    finally:
        client.rpush(release_key, "go")
        client.close()
    # the pool is still healthy afterwards
    assert cluster.run(dist_chain, n=3) == {"y": 3}
