"""A broker behind Redis Sentinel: ``sentinel://`` URLs for workers, clients and services.

A real Redis (the master, with a password) and a real ``redis-server --sentinel`` monitoring
it, both started here on free loopback ports. A worker started with the Sentinel URL and a
client given the same URL run a graph: the client's publisher and result listener, kombu's
Sentinel transport in the worker, the worker's outcome pusher and heartbeat and the built-in
memory all find the master through the Sentinel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aethergraph import run, runtime_loop
from aethergraph.errors import ConfigurationError
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.celery.discovery import read_workers_sync
from aethergraph.execution.celery_app import celery_config
from aethergraph.execution.select import close_executor
from aethergraph.keys import Keys
from aethergraph.redis_clients import parse_sentinel, sync_client
from aethergraph.redis_server import RedisServer, find_redis_server, free_port
from aethergraph.settings import Settings, redact_url

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from polling import stop_group, wait_until  # noqa: E402
from sentinel_tools import s_sum_of_squares  # noqa: E402

TOOLS = str(HERE / "sentinel_tools.py")
MASTER = "agmaster"


@pytest.fixture(scope="module")
def sentinel_url() -> Iterator[str]:
    """``sentinel://:pw@127.0.0.1:<sentinel port>/0?master_name=agmaster`` over a private master."""
    password = uuid.uuid4().hex
    with RedisServer(password=password) as master, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        conf = Path(folder) / "sentinel.conf"  # Sentinel rewrites its own config file
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
            f"sentinel auth-pass {MASTER} {password}\n"
        )
        proc = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probe = redis.Redis(port=port, socket_timeout=2)

            def knows_master() -> bool:
                try:
                    return probe.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
                except redis.ConnectionError:
                    return False

            wait_until(knows_master, "the Sentinel to monitor the master")
            probe.close()
            yield f"sentinel://:{password}@127.0.0.1:{port}/0?master_name={MASTER}"
        finally:
            proc.terminate()
            proc.wait(10)


def test_sentinel_urls_parse_and_redact() -> None:
    url = "sentinel://:s3cret@a:26379;sentinel://:s3cret@b:26380/2?master_name=mymaster"
    parsed = parse_sentinel(url)
    assert parsed.sentinels == [("a", 26379), ("b", 26380)]
    assert (parsed.master_name, parsed.db, parsed.password) == ("mymaster", 2, "s3cret")
    assert parsed.celery_url == url.split("?")[0]
    assert "s3cret" not in redact_url(url)
    config = celery_config(Settings(broker_url=url))
    assert config["broker_url"] == url.split("?")[0]
    assert config["broker_transport_options"]["master_name"] == "mymaster"
    with pytest.raises(ConfigurationError, match="master_name"):
        Settings(broker_url="sentinel://:pw@a:26379/0")
    with pytest.raises(ConfigurationError, match="bad port"):
        parse_sentinel("sentinel://a:port/0?master_name=m")


def test_a_graph_runs_through_a_sentinel(sentinel_url: str) -> None:
    namespace = f"agtest{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "AETHERGRAPH_NAMESPACE": namespace, "PYTHONPATH": str(HERE)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "aethergraph", "worker", "--tools", TOOLS, "-b", sentinel_url,
         "--pool", "prefork", "-c", "2", "-l", "WARNING"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    client = sync_client(sentinel_url)
    keys = Keys(namespace)
    executor = CeleryExecutor(settings=Settings(broker_url=sentinel_url, namespace=namespace))
    try:
        wait_until(
            lambda: worker.poll() is not None or read_workers_sync(client, keys),
            "the worker's heartbeat through the Sentinel",
        )
        assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
        assert run(s_sum_of_squares, n=6, executor=executor) == {"total": 55}
        run_id = s_sum_of_squares.last_graph.run_id
        assert client.llen(keys.memory(run_id)) == 6  # the tools' memory().record(...)
    finally:
        runtime_loop.run_sync(close_executor(executor), timeout=30)
        stop_group(worker)
        for key in client.scan_iter(match=f"*{namespace}*"):
            client.delete(key)
        client.close()
