"""The Celery executor's client side against real workers: one test per defect of the review.

D5 (nothing process-wide), D7 (cancel while publishing), D11 (no SCAN), worker-measured timing,
and cancel-then-exit. Broker outages and lost messages are in ``test_broker_chaos.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from client_tools import c_kv_get, c_len, c_nap
from polling import wait_until

from aethergraph import RunCancelledError, graph_fn, run, runtime_loop, submit
from aethergraph.cluster import LocalCluster
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.select import close_executor
from aethergraph.keys import Keys
from aethergraph.services.builtins.redis_backends import RedisArtifactStore, RedisKV
from aethergraph.services.runtime.registry import current_services

HERE = Path(__file__).resolve().parent


def _executor(cluster: LocalCluster, **overrides: Any) -> CeleryExecutor:
    settings = cluster.executor.settings.model_copy(update=overrides)
    return CeleryExecutor(settings=settings)


def _scans(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


# -- D5: an executor changes nothing process-wide ---------------------------------------------
def test_executor_changes_nothing_process_wide_and_owns_the_shared_builtins(
    cluster: LocalCluster,
) -> None:
    services = current_services()
    before = services.builtins
    fields = (before.channel, before.memory, before.kv, before.artifacts)
    executor = _executor(cluster)
    key = f"test:d5:{uuid.uuid4().hex}"

    @graph_fn(name="client_d5", outputs=["value"])
    async def shared(*, context: Any) -> Any:
        await context.kv().set(key, "from the body")  # the workers' kv, not this process's
        return c_kv_get(key=key)["value"]

    try:
        assert run(shared, executor=executor) == {"value": "from the body"}
        mine = executor.builtins()
        assert isinstance(mine.kv, RedisKV)
        assert isinstance(mine.artifacts, RedisArtifactStore)
        assert mine.channel is services.builtins.channel  # the process's own channel
        now = services.builtins
        assert (now.channel, now.memory, now.kv, now.artifacts) == fields
    finally:
        runtime_loop.run_sync(close_executor(executor), timeout=30)
    after = services.builtins
    assert (after.channel, after.memory, after.kv, after.artifacts) == fields


# -- D7: a node cancelled while its batch is being published is not sent ----------------------
class _GatedStore(RedisArtifactStore):
    """The shared Redis store, holding the publisher inside an offload until released."""

    def __init__(self, url: str, keys: Keys) -> None:
        super().__init__(url, keys)
        self.entered = threading.Event()
        self.release = threading.Event()

    async def save_bytes(self, data: bytes) -> str:
        self.entered.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().save_bytes(data)


def test_node_cancelled_while_its_batch_is_published_is_not_sent(cluster: LocalCluster) -> None:
    settings = cluster.executor.settings
    gated = _GatedStore(cluster.url, Keys(settings.namespace))
    executor = CeleryExecutor(settings=settings, artifacts=gated)
    big = os.urandom(settings.offload_threshold + 1024)  # offloaded: the publisher awaits

    @graph_fn(name="client_d7", outputs=["size"])
    async def offloaded() -> Any:
        return c_len(blob=big)["size"]

    @graph_fn(name="client_d7_after", outputs=["size"])
    async def small() -> Any:
        return c_len(blob=b"abc")["size"]

    try:
        handle = submit(offloaded, executor=executor)
        assert gated.entered.wait(30), "the publisher never offloaded the argument"
        handle.cancel()
        with pytest.raises(RunCancelledError):
            handle.result(30)
        gated.release.set()
        # the same dispatcher publishes this after the cancelled batch: once it is done, the
        # cancelled node's fate is settled
        assert run(small, executor=executor) == {"size": 3}
        assert executor.stats["published"] == 1, "the cancelled node was sent to a worker"
        assert executor.in_flight == 0, "a table still holds the cancelled node"
    finally:
        gated.release.set()
        runtime_loop.run_sync(close_executor(executor), timeout=30)
        runtime_loop.run_sync(gated.aclose(), timeout=10)


# -- D11: worker discovery reads the index, never SCANs the keyspace ---------------------------
def test_worker_discovery_issues_no_scan(cluster: LocalCluster) -> None:
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
    executor = _executor(cluster)

    @graph_fn(name="client_d11", outputs=["ys"])
    async def fan() -> Any:
        return {"ys": [c_nap(seconds=0, i=i)["y"] for i in range(20)]}

    try:
        assert client.zcard(cluster.keys.workers_index()) >= 2  # the workers write the index
        before = _scans(client)
        assert run(fan, executor=executor) == {"ys": list(range(20))}
        assert len(cluster.live_workers()) == 2
        cluster.wait_for_workers(2)
        assert _scans(client) == before, "worker discovery issued SCAN"
    finally:
        runtime_loop.run_sync(close_executor(executor), timeout=30)
        client.close()


# -- timing: started_at / finished_at are the worker's, not the queue's ------------------------
def test_node_duration_is_its_run_time_not_its_time_in_the_queue(cluster: LocalCluster) -> None:
    slots = sum(int(w.get("concurrency", 1)) for w in cluster.live_workers())
    n = 4 * slots  # four waves: the last nodes wait ~0.6 s in the queue before they run

    @graph_fn(name="client_timing", outputs=["ys"])
    async def naps() -> Any:
        return {"ys": [c_nap(seconds=0.2, i=i)["y"] for i in range(n)]}

    begun = time.time()
    assert cluster.run(naps) == {"ys": list(range(n))}
    wall = time.time() - begun
    nodes = list(naps.last_graph)
    assert wall >= 0.75, wall  # the nodes did queue behind each other
    for node in nodes:
        assert node.duration is not None
        assert 0.19 <= node.duration < 0.4, (node.node_id, node.duration)
    latest_start = max(node.started_at or 0.0 for node in nodes)
    assert latest_start - begun >= 0.55  # the last wave really started late


# -- cancel, then exit: the revokes reach the workers before the process is gone ----------------
_CANCEL_THEN_EXIT = """
import sys
sys.path.insert(0, {here!r})
import redis
from client_tools import c_count
from aethergraph import graph_fn, submit
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.settings import get_settings

settings = get_settings().model_copy(update={{"broker_url": {url!r}, "namespace": {ns!r}}})
executor = CeleryExecutor(settings=settings)

@graph_fn(name="client_cancel_exit")
async def many():
    return {{"ys": [c_count(key={key!r}, i=i)["y"] for i in range({n})]}}

handle = submit(many, executor=executor)
client = redis.Redis.from_url({url!r}, socket_timeout=None)
client.blpop([{started!r}], timeout=60)  # the test says: nodes are running
handle.cancel()
print("cancelled", flush=True)
# exit at once: no wait for the run
"""


def _client_script(template: str, cluster: LocalCluster, n: int) -> tuple[str, str, str]:
    """(count key, "go" key, the script) of a client process running ``n`` counted nodes."""
    key = f"{cluster.namespace}:test:count:{uuid.uuid4().hex}"
    started = f"{cluster.namespace}:test:go:{uuid.uuid4().hex}"
    script = template.format(
        here=str(HERE), url=cluster.url, ns=cluster.namespace, key=key, n=n, started=started
    )
    return key, started, script


def test_cancel_then_exit_stops_the_queued_nodes(cluster: LocalCluster) -> None:
    n = 400
    key, started, script = _client_script(_CANCEL_THEN_EXIT, cluster, n)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
    queue = cluster.keys.tool_queue(None)
    try:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        wait_until(lambda: int(client.get(key) or 0) >= 1, "the first node to run")
        client.rpush(started, "go")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert b"cancelled" in out
        # the workers drain what is left: revoked messages are dropped, not run
        wait_until(
            lambda: client.llen(queue) == 0 and not client.hlen(cluster.keys.celery_unacked()),
            "an idle pool",
        )
        executed = int(client.get(key) or 0)
        assert executed < n // 4, f"{executed} of {n} cancelled nodes ran"
    finally:
        client.delete(key, started)
        client.close()


# -- a client that dies: its lease expires and the workers stop starting its nodes -------------
_DIE_MID_RUN = """
import os, signal, sys
sys.path.insert(0, {here!r})
import redis
from client_tools import c_count
from aethergraph import graph_fn, submit
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.settings import get_settings

settings = get_settings().model_copy(
    update={{"broker_url": {url!r}, "namespace": {ns!r}, "client_lease": 2.0}}
)
executor = CeleryExecutor(settings=settings)

@graph_fn(name="client_dies")
async def many():
    return {{"ys": [c_count(key={key!r}, i=i, seconds=0.2)["y"] for i in range({n})]}}

handle = submit(many, executor=executor)
client = redis.Redis.from_url({url!r}, socket_timeout=None)
client.blpop([{started!r}], timeout=60)  # the test says: nodes are running
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no cleanup: the lease just stops
"""


def test_a_killed_clients_queued_nodes_stop_being_started_and_its_keys_expire(
    cluster: LocalCluster,
) -> None:
    n = 300
    key, started, script = _client_script(_DIE_MID_RUN, cluster, n)
    client = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
    queue = cluster.keys.tool_queue(None)
    try:
        before = set(client.keys(f"{cluster.namespace}:client:*"))
        proc = subprocess.Popen([sys.executable, "-c", script])
        wait_until(lambda: int(client.get(key) or 0) >= 1, "the first node to run")
        client.rpush(started, "go")
        assert proc.wait(60) == -signal.SIGKILL
        # within the 2 s lease the workers drop the rest of its nodes instead of running them
        wait_until(
            lambda: client.llen(queue) == 0 and not client.hlen(cluster.keys.celery_unacked()),
            "an idle pool",
        )
        executed = int(client.get(key) or 0)
        assert executed < n // 2, f"{executed} of {n} nodes of a dead client ran"
        left = set(client.keys(f"{cluster.namespace}:client:*")) - before
        assert left, "the dead client wrote no keys at all?"
        assert all(client.pttl(k) > 0 for k in left), "a dead client's key without expiry"
    finally:
        client.delete(key, started)
        client.close()


# -- offloaded arguments live as long as their run ---------------------------------------------
def test_offloaded_arguments_are_released_when_their_run_is_done(cluster: LocalCluster) -> None:
    executor = _executor(cluster)
    big = os.urandom(cluster.executor.settings.offload_threshold + 1024)

    @graph_fn(name="client_offload_release", outputs=["size"])
    async def offloaded() -> Any:
        return c_len(blob=big)["size"]

    client = redis.Redis.from_url(cluster.url)
    try:
        before = set(client.scan_iter(match=f"{cluster.namespace}:art:*"))
        assert run(offloaded, executor=executor) == {"size": len(big)}
        made = set(client.scan_iter(match=f"{cluster.namespace}:art:*")) - before
        assert len(made) == 1, "the argument was not offloaded"
        (key,) = made
        ttl = client.ttl(key)
        assert 0 < ttl <= executor.settings.offload_ttl  # hours, not the store's week
        wait_until(lambda: not client.exists(key), "the run's blob to be released", timeout=30)
        assert executor._offloads.released == 1
    finally:
        client.close()
        runtime_loop.run_sync(close_executor(executor), timeout=30)
