"""The executors every conformance test runs against, and the signals tests and tools exchange.

Each entry of ``EXECUTORS`` gives the executor for one test; every test in this package must pass
on every executor:

* ``local-threads`` / ``local-inline``: a fresh in-process ``LocalExecutor`` per test. Tests and
  tools signal through memory (``MemorySignals``): this lane needs no Redis at all, and asks for
  none (``test_redis_free_lane.py`` runs it where no Redis can be found);
* ``celery``: the executor of a session-wide ``LocalCluster`` — two ``aethergraph worker``
  processes (prefork pool, concurrency 2) on the test Redis serving ``conformance_tools.py``. It
  is started once, by the first celery test that runs, and stopped at the end of the session.
  Tests and tools signal through Redis, on a key namespace unique to the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from aethergraph.execution.base import Executor
from aethergraph.execution.local import LocalExecutor

from .conformance_tools import COORDINATION_ENV, Coordination, RedisSignals, in_memory_signals

if TYPE_CHECKING:
    from aethergraph.cluster import LocalCluster

TOOLS_FILE = str(Path(__file__).resolve().with_name("conformance_tools.py"))


@dataclass(frozen=True)
class ExecutorCase:
    """How to get one executor, and whether its tools run in this process."""

    make: Callable[[pytest.FixtureRequest], Executor]
    in_process: bool


EXECUTORS: dict[str, ExecutorCase] = {
    "local-threads": ExecutorCase(lambda request: LocalExecutor(sync_tools="thread"), True),
    "local-inline": ExecutorCase(lambda request: LocalExecutor(sync_tools="inline"), True),
    "celery": ExecutorCase(
        lambda request: request.getfixturevalue("celery_cluster").executor, False
    ),
}


@pytest.fixture(scope="session")
def coordination_url(redis_url: str) -> Iterator[str]:
    """The Redis the worker processes' tools signal through, published in ``os.environ``."""
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
def celery_cluster(
    redis_url: str, coordination_url: str, redis_session_namespace: str
) -> Iterator[LocalCluster]:
    """Real worker processes serving the conformance tools (started on first use only)."""
    from aethergraph.cluster import LocalCluster

    with LocalCluster(
        workers=2,
        tools=[TOOLS_FILE],
        concurrency=2,
        pool="prefork",
        redis_url=redis_url,
        namespace=redis_session_namespace,  # its keys are deleted at the end of the session
        env={COORDINATION_ENV: coordination_url},
        # a second less of startup: no startup sync (mingle) or event chatter (gossip) between
        # workers; revoking (cancellation) is a broadcast that does not need either
        worker_args=["--without-mingle", "--without-gossip"],
    ) as cluster:
        yield cluster


@pytest.fixture(params=sorted(EXECUTORS))
def executor_name(request: pytest.FixtureRequest) -> str:
    """The name of the executor the test runs on (the test id shows it)."""
    return str(request.param)


@pytest.fixture
def executor(request: pytest.FixtureRequest, executor_name: str) -> Executor:
    return EXECUTORS[executor_name].make(request)


@pytest.fixture
def coord(request: pytest.FixtureRequest, executor_name: str) -> Iterator[Coordination]:
    """Per-test signals: in memory for in-process executors, else Redis keys in a namespace of
    the test (deleted afterwards by ``redis_namespace``). Redis is asked for only in that case."""
    if EXECUTORS[executor_name].in_process:
        with in_memory_signals() as signals:
            yield Coordination(signals, f"mem{uuid.uuid4().hex[:12]}")
        return
    url = request.getfixturevalue("coordination_url")
    c = Coordination(RedisSignals(url), request.getfixturevalue("redis_namespace"))
    try:
        yield c
    finally:
        c.close()
