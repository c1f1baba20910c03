"""Nothing is lost when a worker dies — with the default settings (an hour's visibility timeout).

* a whole worker SIGKILLed mid-tool: its heartbeats stop, the client claims its message and the
  node runs again on the other worker within seconds;
* one prefork pool process SIGKILLed mid-tool: the worker hands the message back and the node
  runs again;
* a poison node that kills its pool process every time fails with ``WorkerKilledError`` after
  ``max_worker_kills`` deaths instead of killing the pool for ever, naming itself and the worker.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery_tools import d_block, d_die, d_inc, d_sum
from tool_paths import HERE, TOOLS

from aethergraph import ToolError, graph_fn, run, submit
from aethergraph.cluster import LocalCluster


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[LocalCluster]:
    # default settings: the visibility timeout stays an hour, recovery must not wait for it
    with LocalCluster(
        workers=2,
        tools=[TOOLS],
        concurrency=1,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE)},
    ) as cluster:
        yield cluster


def _keys(cluster: LocalCluster) -> tuple[str, str]:
    ns = cluster.namespace
    return f"{ns}:test:started:{uuid.uuid4().hex}", f"{ns}:test:release:{uuid.uuid4().hex}"


def test_sigkill_a_whole_worker_mid_tool_the_node_runs_again_elsewhere(
    two_workers: LocalCluster,
) -> None:
    cluster = two_workers
    assert cluster.executor.settings.visibility_timeout == 3600
    started, release = _keys(cluster)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

    @graph_fn(name="dist_survive")
    async def survive() -> Any:
        blocked = d_block(key=started, release=release)
        others = [d_inc(x=i)["y"] for i in range(10)]
        return {"blocked": blocked["y"], "total": d_sum(xs=others)["total"]}

    handle = submit(survive, executor=cluster.executor)
    try:
        first = client.blpop([started], timeout=60)
        assert first is not None, "the blocking tool never started"
        victim_group = os.getpgid(int(first[1]))
        assert victim_group in {w.pid for w in cluster.workers}
        os.killpg(victim_group, signal.SIGKILL)

        # within seconds (the bound is ~7 s), not after the hour-long visibility timeout
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
    assert cluster.executor.recovery.recovered >= 1


def test_sigkill_one_pool_process_the_worker_hands_the_node_back(
    two_workers: LocalCluster,
) -> None:
    cluster = two_workers
    started, release = _keys(cluster)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

    @graph_fn(name="dist_child_dies")
    async def child_dies() -> Any:
        return {"y": d_block(key=started, release=release)["y"]}

    handle = submit(child_dies, executor=cluster.executor)
    try:
        first = client.blpop([started], timeout=60)
        assert first is not None, "the blocking tool never started"
        child = int(first[1])
        assert child not in {w.pid for w in cluster.workers}  # a pool process, not a worker
        os.kill(child, signal.SIGKILL)
        second = client.blpop([started], timeout=60)
        assert second is not None, "the node was not run again after its pool process died"
        assert int(second[1]) != child
        client.rpush(release, "go")
        assert handle.result(60) == {"y": 1}
    finally:
        client.rpush(release, "go", "go")
        client.close()
    assert all(w.poll() is None for w in cluster.workers)  # both workers still serve


def test_a_node_that_kills_its_process_every_time_fails_as_poison(
    two_workers: LocalCluster,
) -> None:
    cluster = two_workers
    runs = f"{cluster.namespace}:test:runs:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

    @graph_fn(name="dist_poison")
    async def poison() -> Any:
        healthy = d_inc(x=1)
        return {"bad": d_die(key=runs, times=100)["y"], "good": healthy["y"]}

    try:
        with pytest.raises(ToolError) as info:
            run(poison, executor=cluster.executor)
        deaths = client.llen(runs)
    finally:
        client.delete(runs)
        client.close()
    error = info.value
    assert error.exc_type == "aethergraph.errors.WorkerKilledError"
    assert "d_die" in str(error)
    assert "3 times" in str(error)
    assert "workers:" in str(error)
    assert deaths == cluster.executor.settings.max_worker_kills == 3
    assert all(w.poll() is None for w in cluster.workers)
    counts = poison.last_graph.status_counts()
    assert counts["failed"] == 1
    assert counts["done"] == 1
    # the pool still serves afterwards
    assert run(poison_free, executor=cluster.executor) == {"y": 2}


@graph_fn(name="dist_poison_free")
async def poison_free() -> Any:
    return {"y": d_inc(x=1)["y"]}


def test_a_node_that_dies_once_runs_again_and_succeeds(two_workers: LocalCluster) -> None:
    cluster = two_workers
    runs = f"{cluster.namespace}:test:runs:{uuid.uuid4().hex}"

    @graph_fn(name="dist_dies_once")
    async def dies_once() -> Any:
        return {"y": d_die(key=runs, times=1)["y"]}

    try:
        assert run(dies_once, executor=cluster.executor) == {"y": 2}
    finally:
        client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
        client.delete(runs)
        client.close()


def test_a_node_running_longer_than_the_visibility_timeout_runs_once(redis_url: str) -> None:
    """kombu's sweep takes back messages scored longer ago than the visibility timeout; workers
    re-score what they hold on every heartbeat, so a running node is never taken back (before,
    a long tool or pack was redelivered while it ran, and ran again, for ever)."""
    visibility = 12  # the least allowed; the workers' sweep runs every 3 s
    with LocalCluster(
        workers=2,
        tools=[TOOLS],
        concurrency=1,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE), "AETHERGRAPH_VISIBILITY_TIMEOUT": str(visibility)},
    ) as cluster:
        started, release = _keys(cluster)
        client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops

        @graph_fn(name="dist_outlives_visibility")
        async def outlives() -> Any:
            return {"y": d_block(key=started, release=release)["y"]}

        handle = submit(outlives, executor=cluster.executor)
        try:
            assert client.blpop([started], timeout=60) is not None
            # the event that must not happen: a second start, on the idle worker, once kombu's
            # sweep has run a few times past the timeout
            again = client.blpop([started], timeout=visibility + 8)
            client.rpush(release, "go")
            assert handle.result(60) == {"y": 1}
        finally:
            client.rpush(release, "go", "go")
            client.close()
        assert again is None, "the running node was redelivered and started a second time"
        assert cluster.executor.recovery.recovered == 0
