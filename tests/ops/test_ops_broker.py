"""broker/redis.conf and broker/users.acl, for real: a production-configured ``redis-server``
with TLS and the least-privilege ACL users, and a graph run through it by a worker and a client
that each log in as their own user.

The server is started from a copy of broker/redis.conf in which only what a test machine must
differ is replaced: the TLS port (a free one), ``bind 127.0.0.1``, the data
directory, the certificate paths (a throwaway CA and server certificate made with openssl here)
and the ACL file path (a copy of broker/users.acl with one extra ``ag-test-admin`` user, which
only this test uses for CONFIG GET and ACL LOG). Everything else — plaintext port off, AOF,
``noeviction``, the users — is what production gets.

The worker is ``workers/entrypoint.sh`` (the image's entrypoint) with the variables of
``workers/worker.env`` (broker URL swapped for the test broker's, as ``ag-worker`` over
``rediss://``) serving ``workers/example_tools.py`` with the ``workers/bootstrap.py`` services.
The client is a ``CeleryExecutor`` logged in as ``ag-client``; ``aethergraph status`` and
``aethergraph flower`` log in as ``ag-ops``. After each test, Redis' ACL LOG must hold no denied
command, key or channel: an ACL that is one permission short fails here even where the library
would swallow the error (its background checks log and carry on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from ops_support import (
    HERE,
    PASSWORDS,
    REPO,
    RedisProcess,
    child_env,
    free_port,
    make_tls,
    override,
    wait_until,
)
from ops_tools import ops_held
from polling import stop_group
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from aethergraph import run, runtime_loop, submit
from aethergraph.errors import RunCancelledError
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.execution.select import close_executor
from aethergraph.keys import Keys
from aethergraph.settings import Settings

WORKERS = REPO / "workers"
sys.path.insert(0, str(WORKERS))
import example_tools  # noqa: E402  # the image's example tools, as a client imports them

ADMIN = "ag-test-admin"
NAMESPACE = "ag"  # the namespace broker/users.acl is written for


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (docker's and systemd's common subset)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            assert key.isidentifier(), f"{path}: not a variable name: {line!r}"
            values[key] = value
    return values


@dataclass
class Broker:
    folder: Path
    port: int
    tls: dict[str, Path]
    admin: redis.Redis

    def url(self, user: str, password: str | None = None) -> str:
        secret = password if password is not None else PASSWORDS[user]
        return (
            f"rediss://{user}:{secret}@127.0.0.1:{self.port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={self.tls['ca']}"
        )

    def client(self, user: str, password: str | None = None) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, password), socket_timeout=10)

    def denials(self) -> list[dict[str, Any]]:
        """ACL LOG entries: every command, key or channel the ACL refused since the last reset."""
        return [
            {k: v for k, v in entry.items() if k in ("username", "reason", "object", "context")}
            for entry in self.admin.acl_log()
        ]


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="aethergraph-broker-"))
    server = None
    try:
        tls = make_tls(folder / "tls")
        admin_password = uuid.uuid4().hex
        acl = folder / "users.acl"
        acl.write_text(
            (REPO / "broker" / "users.acl").read_text()
            + f"user {ADMIN} on >{admin_password} ~* &* +@all\n"
        )
        port = free_port()
        config = folder / "redis.conf"
        config.write_text(
            override(
                (REPO / "broker" / "redis.conf").read_text(),
                bind="127.0.0.1",
                tls_port=str(port),
                dir=str(folder),
                tls_cert_file=str(tls["cert"]),
                tls_key_file=str(tls["key"]),
                tls_ca_cert_file=str(tls["ca"]),
                aclfile=str(acl),
            )
        )
        server = RedisProcess(config, log=folder / "redis.log")
        b = Broker(folder, port, tls, redis.Redis())
        b.admin = b.client(ADMIN, admin_password)
        server.wait_ready(b.admin, "the production-configured redis-server")
        yield b
        b.admin.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def no_denials(broker: Broker) -> Iterator[None]:
    broker.admin.acl_log_reset()
    yield
    assert broker.denials() == [], "the ACL refused something AetherGraph needs"


@pytest.fixture(scope="module")
def worker(broker: Broker) -> Iterator[dict[str, Any]]:
    """The image's entrypoint with workers/worker.env, as ag-worker over TLS."""
    env_file = read_env_file(WORKERS / "worker.env")
    Settings(**{k.removeprefix("AETHERGRAPH_").lower(): v for k, v in env_file.items()
                if k.startswith("AETHERGRAPH_")})  # fmt: skip  # every value in it is valid
    metrics_port = free_port()
    scratch = broker.folder / "scratch"
    env = child_env(**env_file)
    env.update(
        AETHERGRAPH_BROKER_URL=broker.url("ag-worker"),
        AETHERGRAPH_METRICS_PORT=str(metrics_port),
        AETHERGRAPH_STOP_GRACE="5",
        WORKER_TOOLS="example_tools,ops_tools",
        WORKER_LOGLEVEL="WARNING",
        WORKER_SCRATCH_DIR=str(scratch),
        PYTHONPATH=os.pathsep.join([str(WORKERS), str(HERE)]),
    )
    assert env["AETHERGRAPH_NAMESPACE"] == NAMESPACE
    log = (broker.folder / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(WORKERS / "entrypoint.sh")],
        cwd=WORKERS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ops = broker.client("ag-ops")
    keys = Keys(NAMESPACE)
    try:
        wait_until(
            lambda: proc.poll() is not None or ops.zrange(keys.workers_index(), 0, -1),
            "the worker's first heartbeat",
            timeout=60,
        )
        assert proc.poll() is None, (broker.folder / "worker.log").read_text()
        yield {"proc": proc, "metrics_port": metrics_port, "scratch": scratch}
    finally:
        stop_group(proc)
        log.close()
        ops.close()


@pytest.fixture(scope="module")
def client_executor(broker: Broker, worker: dict[str, Any]) -> Iterator[CeleryExecutor]:
    settings = Settings(
        broker_url=broker.url("ag-client"), namespace=NAMESPACE, lost_message_check=1.0
    )
    executor = CeleryExecutor(settings=settings)
    try:
        yield executor
    finally:
        runtime_loop.run_sync(close_executor(executor), timeout=30)


def test_the_config_is_production_grade(broker: Broker) -> None:
    """AOF with fsync every second, no eviction, TLS only, protected mode: as configured."""
    config = broker.admin.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["port"] == "0"  # no plaintext listener
    assert config["tls-port"] == str(broker.port)
    assert config["protected-mode"] == "yes"
    wait_until(
        lambda: broker.admin.info("persistence")["aof_enabled"] == 1, "the AOF to be enabled"
    )
    # the server really speaks TLS only: a plaintext connection to the port gets nowhere
    plain = redis.Redis(
        port=broker.port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()


def test_users_log_in_and_the_default_user_is_off(broker: Broker) -> None:
    for user in ("ag-client", "ag-worker", "ag-ops"):
        with broker.client(user) as c:
            assert c.ping()
    with (
        broker.client("ag-client", "wrong-password") as c,
        pytest.raises(redis.AuthenticationError),
    ):
        c.ping()
    anonymous = redis.Redis.from_url(
        f"rediss://127.0.0.1:{broker.port}/0?ssl_cert_reqs=required&ssl_ca_certs={broker.tls['ca']}"
    )
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: the default user is off
        anonymous.get("ag:kv:x")
    anonymous.close()


def test_a_graph_runs_with_least_privilege(
    broker: Broker, worker: dict[str, Any], client_executor: CeleryExecutor, no_denials: None
) -> None:
    """Dispatch, results, live channel and log messages, memory, kv, artifacts, an offloaded
    argument, the client's lease, lost-message and orphan checks (a node held over 1 s), and the
    bootstrap's service — as ag-client and ag-worker over rediss://."""
    out = run(example_tools.squares, n=12, executor=client_executor)
    assert out["total"] == sum(i * i for i in range(12))
    assert out["uri"].startswith("artifact://sha256/")
    assert out["worker"].rsplit(":", 1)[1] != str(os.getpid())  # ran in the worker's process
    graph = example_tools.squares.last_graph
    ops = broker.client("ag-ops")
    keys = Keys(NAMESPACE)
    assert ops.llen(keys.memory(graph.run_id)) == 1  # total_and_store's memory().record
    assert ops.exists(keys.kv("last_total"))
    big = os.urandom(300_000)  # over AETHERGRAPH_OFFLOAD_THRESHOLD: travels by reference
    assert run(example_tools.measure, blob=big, executor=client_executor) == {"size": 300_000}
    key = f"hold-{uuid.uuid4().hex}"
    assert run(ops_held, key=key, seconds=1.5, executor=client_executor) == {"slept": 1.5}
    assert client_executor.stats["results"] >= 3, client_executor.stats
    ops.close()


def test_a_cancelled_run_revokes_as_the_client(
    broker: Broker, worker: dict[str, Any], client_executor: CeleryExecutor, no_denials: None
) -> None:
    """Cancelling a run publishes a revoke on the namespace's control channel (ag-client)."""
    key = f"hold-{uuid.uuid4().hex}"
    handle = submit(ops_held, key=key, seconds=60, executor=client_executor)
    ops = broker.client("ag-ops")
    wait_until(lambda: ops.exists(Keys(NAMESPACE).kv(key)), "the held node to start")
    started = time.monotonic()
    handle.cancel()
    with pytest.raises(RunCancelledError):
        handle.result(timeout=30)
    assert time.monotonic() - started < 30
    wait_until(
        lambda: ops.hlen(Keys(NAMESPACE).celery_unacked()) == 0,
        "the worker to drop the revoked message",
    )
    ops.close()


def test_status_and_flower_work_as_ops(
    broker: Broker, worker: dict[str, Any], client_executor: CeleryExecutor, no_denials: None
) -> None:
    """``aethergraph status --json`` and ``aethergraph flower`` (its event stream, its
    inspect broadcasts and replies, its /metrics) as the ag-ops user."""
    env = child_env(AETHERGRAPH_BROKER_URL=broker.url("ag-ops"), AETHERGRAPH_NAMESPACE=NAMESPACE)

    def cli_json(command: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "aethergraph", command, "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    status = cli_json("status")
    assert len(status["workers"]) == 1
    assert "square" in status["workers"][0]["tools"]
    assert {q["name"] for q in status["queues"]} >= {"aethergraph"}
    runs = cli_json("runs")
    assert runs, "the client's runs are in the record index"
    assert {r["state"] for r in runs} <= {"done", "failed", "cancelled", "running"}

    port = free_port()
    log = (broker.folder / "flower.log").open("wb")
    flower = subprocess.Popen(
        [sys.executable, "-m", "aethergraph", "flower", f"--port={port}", "--address=127.0.0.1"],
        env={**env, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(base + "/healthcheck") == "OK", "Flower to serve", timeout=60)
        # events flow once Flower has seen the worker's heartbeat event (a Pub/Sub message)
        wait_until(
            lambda: "flower_worker_online{" in (_get(base + "/metrics") or ""),
            f"Flower to see the worker's heartbeat events (ACL denials: {broker.denials()})",
            timeout=30,
        )
        assert run(example_tools.squares, n=3, executor=client_executor)["total"] == 5

        def workers_seen() -> Any:
            text = _get(base + "/api/workers?refresh=1")
            return text and json.loads(text)

        seen = wait_until(workers_seen, "Flower's inspect replies from the worker", timeout=30)
        assert any("square" in json.dumps(info.get("registered", [])) for info in seen.values())
        wait_until(
            lambda: 'task="square",type="task-succeeded"' in (_get(base + "/metrics") or ""),
            "Flower to count the square tasks it saw on the event stream",
            timeout=30,
        )
    finally:
        stop_group(flower)
        log.close()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return None


def test_worker_metrics_are_served_where_prometheus_scrapes(
    broker: Broker, worker: dict[str, Any], client_executor: CeleryExecutor
) -> None:
    """The worker's /metrics (AETHERGRAPH_METRICS_PORT from worker.env) counts the nodes."""
    run(example_tools.squares, n=2, executor=client_executor)
    text = _get(f"http://127.0.0.1:{worker['metrics_port']}/metrics") or ""
    assert "aethergraph_" in text, text[:2000]
    assert 'tool="square"' in text, text[:2000]


FORBIDDEN = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("ACL", "LIST"),
    ("SHUTDOWN",),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("MONITOR",),
    ("SCRIPT", "FLUSH"),
    ("REPLICAOF", "NO", "ONE"),
    ("BGREWRITEAOF",),
]


def test_the_acl_refuses_what_a_user_does_not_need(broker: Broker) -> None:
    broker.admin.set("other:secret", "x")  # a key outside the namespace
    broker.admin.set("ag:kv:probe", "1")
    client, worker_user, ops = (broker.client(u) for u in ("ag-client", "ag-worker", "ag-ops"))
    try:
        for c in (client, worker_user, ops):
            for command in FORBIDDEN:
                with pytest.raises(NoPermissionError):
                    c.execute_command(*command)
            with pytest.raises(NoPermissionError):
                c.get("other:secret")  # another namespace's (or anybody's) key
            with pytest.raises(NoPermissionError):
                c.publish("other-channel", "x")
        with pytest.raises(NoPermissionError):
            ops.set("ag:kv:probe", "2")  # ops reads the namespace, never writes its data
        with pytest.raises(NoPermissionError):
            ops.lpush("ag.aethergraph", "{}")  # nor enqueues tasks
        assert ops.get("ag:kv:probe") == b"1"
        with pytest.raises(NoPermissionError):
            client.sadd("_kombu.binding.ag.aethergraph", "x")  # clients never touch routing
    finally:
        for c in (client, worker_user, ops):
            c.close()
        broker.admin.delete("other:secret", "ag:kv:probe")
        broker.admin.acl_log_reset()
