"""Packing: many ready nodes of one tool travel in few Celery messages, yet stay nodes.

Each packed node keeps its own outcome, failure, retry, status and cancellation; the worker
runs the pack's sync nodes one after another and its async nodes concurrently.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from celery_tools import d_ainc, d_block, d_fail_if, d_flaky, d_inc, d_sum

from aethergraph import RunCancelledError, ToolError, graph_fn, run, runtime_loop, submit
from aethergraph.cluster import LocalCluster
from aethergraph.execution.celery import CeleryExecutor


@graph_fn(name="pack_fan", outputs=["total"])
async def pack_fan(n: int) -> Any:
    ys = [d_inc(x=i)["y"] for i in range(n)] + [d_ainc(x=i)["y"] for i in range(n)]
    return {"total": d_sum(xs=ys)["total"]}


@graph_fn(name="pack_chain", outputs=["y"])
async def pack_chain(n: int) -> Any:
    h = d_inc(x=0)
    for _ in range(n - 1):
        h = d_inc(x=h["y"])
    return h["y"]


def test_a_wide_fan_out_is_packed_and_every_node_resolves(cluster: LocalCluster) -> None:
    stats = cluster.executor.stats
    before = stats["published"]
    n = 300
    assert cluster.run(pack_fan, n=n) == {"total": 2 * sum(range(1, n + 1))}
    published = stats["published"] - before
    assert published < (2 * n + 1) / 4, f"{published} messages for {2 * n + 1} nodes"
    graph = pack_fan.last_graph
    assert graph is not None
    assert {node.status.value for node in graph} == {"done"}
    assert {node.attempts for node in graph} == {1}


def test_failures_and_retries_stay_per_node_inside_packs(cluster: LocalCluster) -> None:
    @graph_fn(name="pack_failures")
    async def failing(n: int) -> Any:
        ys = [d_fail_if(x=i, bad=[7, 30])["y"] for i in range(n)]
        return {"total": d_sum(xs=ys)["total"]}

    with pytest.raises(ToolError) as err:
        cluster.run(failing, n=60)
    assert err.value.node_id in {"d_fail_if_7", "d_fail_if_30"}
    assert "bad input" in str(err.value)
    statuses = {node.node_id: node.status.value for node in failing.last_graph}
    assert statuses["d_fail_if_7"] == statuses["d_fail_if_30"] == "failed"
    assert statuses["d_sum_0"] == "skipped"
    done = [k for k, v in statuses.items() if v == "done"]
    assert len(done) == 58  # every other node of the packs finished

    prefix = f"pack-flaky-{uuid.uuid4().hex}"

    @graph_fn(name="pack_retries", outputs=["ys"])
    async def flaky(n: int) -> Any:
        return {"ys": [d_flaky(key=f"{prefix}-{i}", fail_times=1)["y"] for i in range(n)]}

    before = cluster.executor.stats["published"]
    assert cluster.run(flaky, n=64) == {"ys": [2] * 64}  # each failed once, retried once
    # 64 retries (they come due one by one) plus far fewer than 64 messages for the first attempts
    assert cluster.executor.stats["published"] - before < 2 * 64
    assert {node.attempts for node in flaky.last_graph} == {2}


def test_cancel_stops_running_and_queued_packs(cluster: LocalCluster) -> None:
    started_key = f"{cluster.namespace}:test:pack-started:{uuid.uuid4().hex}"
    release_key = f"{cluster.namespace}:test:pack-release:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

    @graph_fn(name="pack_cancel")
    async def blockers(n: int) -> Any:
        return {"ys": [d_block(key=started_key, release=release_key)["y"] for _ in range(n)]}

    before = cluster.executor.stats["published"]
    handle = submit(blockers, n=48, executor=cluster.executor)
    try:
        assert client.blpop([started_key], timeout=30) is not None
        assert cluster.executor.stats["published"] - before < 48  # the blockers were packed
        handle.cancel()
        with pytest.raises(RunCancelledError):
            handle.result(30)
        assert {n.status.value for n in blockers.last_graph} == {"cancelled"}
        # the packs were stopped: the slots are free again, and no further blocker started
        assert cluster.run(pack_chain, n=5) == {"y": 5}
        slots = sum(1 for _ in cluster.live_workers()) * 2
        assert client.llen(started_key) < slots
    finally:
        client.rpush(release_key, *["go"] * 48)
        client.expire(release_key, 60)
        client.delete(started_key)
        client.close()


def test_max_pack_1_sends_one_message_per_node(cluster: LocalCluster) -> None:
    settings = cluster.executor.settings.model_copy(update={"max_pack": 1})
    executor = CeleryExecutor(settings=settings)
    try:
        assert run(pack_fan, n=40, executor=executor) == {"total": 2 * sum(range(1, 41))}
        assert executor.stats["published"] == 81
    finally:
        runtime_loop.run_sync(executor.close())
