"""SIGTERM to a worker (scancel, preemption, pod deletion, systemctl stop) loses nothing.

The signal goes to the worker's whole process group, as Slurm and systemd send it: running nodes
finish within the grace period, and what outlasts it is handed back to the client at once — not
counted as a death, and not left to the visibility timeout or the missing heartbeats.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery_tools import d_block
from tool_paths import HERE, TOOLS

from aethergraph import graph_fn, runtime_loop, submit
from aethergraph.cluster import LocalCluster
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.select import close_executor


@pytest.fixture
def cluster_with_grace(redis_url: str, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    with LocalCluster(
        workers=2,
        tools=[TOOLS],
        concurrency=1,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE), "AETHERGRAPH_STOP_GRACE": str(request.param)},
    ) as cluster:
        yield cluster


def _blocking_graph(cluster: LocalCluster) -> tuple[Any, str, str]:
    ns = cluster.namespace
    started, release = (
        f"{ns}:test:started:{uuid.uuid4().hex}",
        f"{ns}:test:release:{uuid.uuid4().hex}",
    )

    @graph_fn(name="dist_stopped")
    async def stopped() -> Any:
        return {"y": d_block(key=started, release=release)["y"]}

    return stopped, started, release


def _sigterm_the_worker_running(cluster: LocalCluster, pid: int) -> int:
    """SIGTERM the process group of the worker whose pool process ``pid`` is; its index."""
    group = os.getpgid(pid)
    (index,) = [i for i, w in enumerate(cluster.workers) if w.pid == group]
    os.killpg(group, signal.SIGTERM)
    return index


@pytest.mark.parametrize("cluster_with_grace", [60], indirect=True)
def test_sigterm_lets_the_running_node_finish_then_the_worker_exits(
    cluster_with_grace: LocalCluster,
) -> None:
    cluster = cluster_with_grace
    graph, started, release = _blocking_graph(cluster)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
    handle = submit(graph, executor=cluster.executor)
    try:
        first = client.blpop([started], timeout=60)
        assert first is not None
        index = _sigterm_the_worker_running(cluster, int(first[1]))
        # its pool process got the SIGTERM too and is not cut short: no second start
        assert client.blpop([started], timeout=3) is None
        assert cluster.workers[index].poll() is None  # still finishing its node
        client.rpush(release, "go")
        assert handle.result(60) == {"y": 1}
        assert cluster.workers[index].wait(30) == 0  # then it stops, cleanly
    finally:
        client.rpush(release, "go", "go")
        client.close()
    assert cluster.executor.recovery.recovered == 0  # it ran exactly once, where it started


@pytest.mark.parametrize("cluster_with_grace", [1], indirect=True)
def test_a_node_that_outlasts_the_grace_is_handed_back_not_counted_as_a_death(
    cluster_with_grace: LocalCluster,
) -> None:
    cluster = cluster_with_grace
    # one death would fail the node: a handback must not count as one
    settings = cluster.executor.settings.model_copy(update={"max_worker_kills": 1})
    executor = CeleryExecutor(settings=settings)
    graph, started, release = _blocking_graph(cluster)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
    try:
        handle = submit(graph, executor=executor)
        first = client.blpop([started], timeout=60)
        assert first is not None
        index = _sigterm_the_worker_running(cluster, int(first[1]))
        second = client.blpop([started], timeout=60)  # handed back after 1 s: runs elsewhere
        assert second is not None
        assert os.getpgid(int(second[1])) != cluster.workers[index].pid
        client.rpush(release, "go")
        assert handle.result(60) == {"y": 1}
        assert cluster.workers[index].wait(30) == 0
        assert executor.recovery.recovered == 1
        # nothing left for kombu's sweep to bring back an hour later
        assert not client.hlen(cluster.keys.celery_unacked())
    finally:
        client.rpush(release, "go", "go")
        client.close()
        runtime_loop.run_sync(close_executor(executor), timeout=30)
