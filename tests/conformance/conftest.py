"""The executors every conformance test runs against, and the Redis the tests coordinate through.

Each entry of ``EXECUTORS`` gives the executor for one test; every test in this package must pass
on every executor:

* ``local-threads`` / ``local-inline``: a fresh in-process ``LocalExecutor`` per test;
* ``celery``: the executor of a session-wide ``LocalCluster`` — two ``aethergraph worker``
  processes (prefork pool, concurrency 2) on the test Redis serving ``conformance_tools.py``. It
  is started once, by the first celery test that runs, and stopped at the end of the session.

The tools the tests use are defined in ``conformance_tools.py`` (workers import that file by path)
and coordinate with the tests through Redis (``coord``: a ``Coordination`` on a key namespace
unique to the test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from aethergraph.execution.base import Executor
from aethergraph.execution.local import LocalExecutor

from .conformance_tools import COORDINATION_ENV, Coordination

if TYPE_CHECKING:
    from aethergraph.cluster import LocalCluster

TOOLS_FILE = str(Path(__file__).resolve().with_name("conformance_tools.py"))

EXECUTORS: dict[str, Callable[[pytest.FixtureRequest], Executor]] = {
    "local-threads": lambda request: LocalExecutor(sync_tools="thread"),
    "local-inline": lambda request: LocalExecutor(sync_tools="inline"),
    "celery": lambda request: request.getfixturevalue("celery_cluster").executor,
}


@pytest.fixture(scope="session")
def coordination_url(redis_url: str) -> Iterator[str]:
    """The Redis the tools signal through, published to them in ``os.environ``."""
    previous = os.environ.get(COORDINATION_ENV)
    os.environ[COORDINATION_ENV] = redis_url
    try:
        yield redis_url
    finally:
        if previous is None:
            os.environ.pop(COORDINATION_ENV, None)
        else:
            os.environ[COORDINATION_ENV] = previous


@pytest.fixture(scope="session")
def celery_cluster(redis_url: str, coordination_url: str) -> Iterator[LocalCluster]:
    """Real worker processes serving the conformance tools (started on first use only)."""
    from aethergraph.cluster import LocalCluster

    with LocalCluster(
        workers=2,
        tools=[TOOLS_FILE],
        concurrency=2,
        pool="prefork",
        redis_url=redis_url,
        env={COORDINATION_ENV: coordination_url},
        # a second less of startup: no startup sync (mingle) or event chatter (gossip) between
        # workers; revoking (cancellation) is a broadcast that does not need either
        worker_args=["--without-mingle", "--without-gossip"],
    ) as cluster:
        yield cluster


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request: pytest.FixtureRequest, coordination_url: str) -> Executor:
    return EXECUTORS[request.param](request)


@pytest.fixture
def coord(coordination_url: str, redis_namespace: str) -> Iterator[Coordination]:
    """Per-test coordination keys (deleted afterwards by ``redis_namespace``)."""
    c = Coordination(coordination_url, redis_namespace)
    try:
        yield c
    finally:
        c.close()
