"""Shared test setup: an isolated artifact store and a clean service registry per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Before anything reads settings: keep artifacts out of the user's home directory.
os.environ.setdefault(
    "AETHERGRAPH_ARTIFACTS_DIR", tempfile.mkdtemp(prefix="aethergraph-test-artifacts-")
)

from aethergraph.services.runtime.registry import current_services


@pytest.fixture(autouse=True)
def _clean_services() -> Iterator[None]:
    """Unregister (and close) custom services a test registered."""
    services = current_services()
    before = set(services.names())
    yield
    for name in set(services.names()) - before:
        services.unregister(name)
    services.serving = False


# -- Redis: the local server when it answers, else a private redis-server ---------------------

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for tests: 127.0.0.1:6379 when it answers, else a private server."""
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no Redis on 127.0.0.1:6379 and no redis-server on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the private redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A unique key namespace for one test; its keys are deleted afterwards."""
    import redis

    namespace = f"agtest{uuid.uuid4().hex[:10]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
