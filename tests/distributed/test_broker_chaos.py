"""The Celery executor when the broker fails: a private Redis the tests kill and bring back.

D3: dispatch survives broker errors — nodes complete once the broker returns, or fail with
``BrokerUnavailableError`` (naming the broker, password redacted) when it stays away beyond
``broker_outage_timeout``. D13: a node without a timeout whose message the broker lost (a restart
without persistence) is sent again by the client instead of waiting for ever.

The module has its own Redis and a one-slot cluster on it, so killing the broker disturbs no
other test.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery_tools import d_block
from client_tools import c_nap, c_started_nap

from aethergraph import ToolError, graph_fn, run, runtime_loop, submit
from aethergraph.cluster import LocalCluster
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.select import close_executor
from aethergraph.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
TOOLS = [str(HERE / "celery_tools.py"), str(HERE / "client_tools.py")]
PASSWORD = "chaos-secret-pw"


@pytest.fixture(scope="module")
def chaos() -> Iterator[tuple[RedisServer, LocalCluster]]:
    server = RedisServer(password=PASSWORD).start()
    try:
        with LocalCluster(
            workers=1,
            tools=TOOLS,
            concurrency=1,
            redis_url=server.url,
            env={"PYTHONPATH": str(HERE)},
        ) as cluster:
            yield server, cluster
    finally:
        server.stop()


@pytest.fixture
def broker(chaos: tuple[RedisServer, LocalCluster]) -> Iterator[tuple[RedisServer, LocalCluster]]:
    """The chaos pair, with the broker running and the worker heartbeating afterwards."""
    yield chaos
    server, cluster = chaos
    if not server.running:
        server.restart()
    cluster.wait_for_workers(1)


def _executor(cluster: LocalCluster, **overrides: Any) -> CeleryExecutor:
    return CeleryExecutor(settings=cluster.executor.settings.model_copy(update=overrides))


class _LogSeen(logging.Handler):
    """Sets an event when a log line containing ``needle`` is emitted."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@graph_fn(name="chaos_one", outputs=["y"])
async def one(i: int = 1) -> Any:
    return c_nap(seconds=0, i=i)["y"]


def test_nodes_fail_with_broker_unavailable_when_the_broker_stays_down(
    broker: tuple[RedisServer, LocalCluster],
) -> None:
    server, cluster = broker
    executor = _executor(cluster, broker_outage_timeout=1.5)
    try:
        assert run(one, {"i": 1}, executor=executor) == {"y": 1}  # started, warm
        server.kill()
        handle = submit(one, {"i": 2}, executor=executor)
        with pytest.raises(ToolError) as info:
            handle.result(60)
        assert info.value.exc_type == "aethergraph.errors.BrokerUnavailableError"
        assert f"127.0.0.1:{server.port}" in info.value.message
        assert PASSWORD not in info.value.message
        assert executor.in_flight == 0
        assert executor.following == 0
    finally:
        server.restart()
        runtime_loop.run_sync(close_executor(executor), timeout=30)


def test_dispatch_rides_out_a_broker_restart(broker: tuple[RedisServer, LocalCluster]) -> None:
    server, cluster = broker
    executor = _executor(cluster, broker_outage_timeout=60)
    seen = _LogSeen("dispatch: broker")
    logging.getLogger("aethergraph").addHandler(seen)
    try:
        assert run(one, {"i": 1}, executor=executor) == {"y": 1}
        server.kill()
        handle = submit(one, {"i": 3}, executor=executor)
        assert seen.seen.wait(30), "the dispatcher never met the broker error"
        server.restart()
        assert handle.result(60) == {"y": 3}
        assert executor.in_flight == 0  # the failed publishes left nothing behind (D12)
        assert executor.following == 0
    finally:
        logging.getLogger("aethergraph").removeHandler(seen)
        runtime_loop.run_sync(close_executor(executor), timeout=30)


def test_a_hung_broker_during_subscription_loses_no_batch(
    broker: tuple[RedisServer, LocalCluster],
) -> None:
    """SIGSTOP: the Pub/Sub subscription of a new run is never confirmed (or, if the worker
    snapshot was due, discovery times out); once the broker resumes, the node completes."""
    server, cluster = broker
    executor = _executor(cluster, broker_outage_timeout=60)
    missed, retried = _LogSeen("may be missed"), _LogSeen("dispatch: broker")
    log = logging.getLogger("aethergraph")
    log.addHandler(missed)
    log.addHandler(retried)
    try:
        assert run(one, {"i": 1}, executor=executor) == {"y": 1}  # worker snapshot fresh
        server.send_signal(signal.SIGSTOP)
        try:
            handle = submit(one, {"i": 5}, executor=executor)  # a new run: a new subscription
            deadline = time.monotonic() + 40
            while not (missed.seen.is_set() or retried.seen.is_set()):
                if time.monotonic() > deadline:
                    break  # resume anyway: the node must still complete
                missed.seen.wait(0.05)
        finally:
            server.send_signal(signal.SIGCONT)
        assert handle.result(60) == {"y": 5}
        assert missed.seen.is_set() or retried.seen.is_set(), "dispatch never met the hang"
        assert executor.in_flight == 0
    finally:
        log.removeHandler(missed)
        log.removeHandler(retried)
        runtime_loop.run_sync(close_executor(executor), timeout=30)


def test_a_node_whose_message_the_broker_lost_is_sent_again(
    broker: tuple[RedisServer, LocalCluster],
) -> None:
    server, cluster = broker
    executor = _executor(cluster, lost_message_check=1.0)
    started = f"{cluster.namespace}:test:started:{uuid.uuid4().hex}"
    release = f"{cluster.namespace}:test:release:{uuid.uuid4().hex}"

    @graph_fn(name="chaos_blocker", outputs=["y"])
    async def blocker() -> Any:
        return d_block(key=started, release=release)["y"]

    client = redis.Redis.from_url(server.url, socket_timeout=None)  # blocking pops
    queue = cluster.keys.tool_queue(None)
    try:
        held = submit(blocker, executor=executor)
        assert client.blpop([started], timeout=30) is not None  # the only slot is busy
        victim = submit(one, {"i": 4}, executor=executor)
        pause, deadline = threading.Event(), time.monotonic() + 30
        while not client.llen(queue):  # its message waits in the queue (no event to await)
            assert time.monotonic() < deadline, "the victim's message was never queued"
            pause.wait(0.02)
        server.restart()  # empty: the queued message is gone, and no outcome will come
        client.rpush(release, "go")  # the slot frees up once the victim is sent again
        assert victim.result(60) == {"y": 4}
        assert executor._lost is not None
        assert executor._lost.lost >= 1
        assert executor.recovery.recovered >= 1
    finally:
        client.close()
        again = redis.Redis.from_url(server.url)
        again.rpush(release, "go")
        again.close()
        try:
            held.result(60)
        except Exception:  # its Redis went away mid-tool; only the victim is under test
            pass
        runtime_loop.run_sync(close_executor(executor), timeout=30)


def test_an_outcome_pushed_while_the_broker_is_down_arrives_once_it_is_back(
    broker: tuple[RedisServer, LocalCluster],
) -> None:
    """The worker's outcome push meets a stopped Redis: it is retried until Redis is back, and
    the node completes from that outcome — not hung, not sent again."""
    server, cluster = broker
    executor = _executor(cluster, broker_outage_timeout=60)
    started = f"{cluster.namespace}:test:started:{uuid.uuid4().hex}"

    @graph_fn(name="chaos_push_in_outage", outputs=["y"])
    async def napper() -> Any:
        return c_started_nap(key=started, seconds=1.0, i=7)["y"]

    client = redis.Redis.from_url(server.url, socket_timeout=None)  # blocking pops
    try:
        handle = submit(napper, executor=executor)
        assert client.blpop([started], timeout=30) is not None
        client.close()
        server.kill()  # the tool pushes its outcome ~1 s later, into a broker that is gone
        threading.Event().wait(3.0)  # an outage of a few seconds: the length is the scenario
        server.restart()
        assert handle.result(60) == {"y": 7}
        assert executor.recovery.recovered == 0  # its own outcome arrived: it ran once
    finally:
        client.close()
        runtime_loop.run_sync(close_executor(executor), timeout=30)
