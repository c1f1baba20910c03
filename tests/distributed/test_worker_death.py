"""Nothing is lost when a worker dies: SIGKILL a whole worker in the middle of a tool."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery_tools import d_block, d_inc, d_sum
from conftest import HERE, TOOLS

from aethergraph import graph_fn, submit
from aethergraph.cluster import LocalCluster


@pytest.fixture
def fragile_cluster(redis_url: str) -> Iterator[LocalCluster]:
    # A short visibility timeout so that the message of a vanished worker comes back quickly.
    with LocalCluster(
        workers=2,
        tools=[TOOLS],
        concurrency=1,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE), "AETHERGRAPH_VISIBILITY_TIMEOUT": "3"},
    ) as cluster:
        yield cluster


def test_sigkill_a_worker_mid_tool_the_node_runs_again_elsewhere(
    fragile_cluster: LocalCluster,
) -> None:
    cluster = fragile_cluster
    started = f"{cluster.namespace}:test:started:{uuid.uuid4().hex}"
    release = f"{cluster.namespace}:test:release:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(cluster.url)

    @graph_fn(name="dist_survive")
    async def survive() -> Any:
        blocked = d_block(key=started, release=release)
        others = [d_inc(x=i)["y"] for i in range(10)]
        return {"blocked": blocked["y"], "total": d_sum(xs=others)["total"]}

    handle = submit(survive, executor=cluster.executor)
    try:
        first = client.blpop([started], timeout=60)
        assert first is not None, "the blocking tool never started"
        victim_pid = int(first[1])
        victim_group = os.getpgid(victim_pid)
        assert victim_group in {w.pid for w in cluster.workers}
        os.killpg(victim_group, signal.SIGKILL)

        second = client.blpop([started], timeout=60)
        assert second is not None, "the node was not run again after its worker died"
        assert os.getpgid(int(second[1])) != victim_group
        client.rpush(release, "go")
        result = handle.result(60)
    finally:
        client.rpush(release, "go", "go")
        client.close()
    assert result == {"blocked": 1, "total": sum(range(1, 11))}
    assert survive.last_graph.status_counts()["done"] == 12
