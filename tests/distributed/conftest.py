"""A LocalCluster of real worker processes on the test Redis, shared by the distributed tests.

Why not pytest-celery: its 1.x fixtures build brokers and workers as Docker containers (none
runs here, nor on many users' CI), and the container-free ``celery.contrib.pytest`` worker is a
thread inside the test process — it would not exercise what ships: ``aethergraph worker``
processes with a prefork pool, their own service registries, signals, the tool allowlist and
real SIGKILLs. A ``LocalCluster`` starts exactly those, on the test's own private Redis.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from tool_paths import CLIENT_TOOLS, TOOLS  # noqa: E402


@pytest.fixture(scope="session")
def cluster(redis_url: str) -> Iterator[object]:
    from aethergraph.cluster import LocalCluster

    with LocalCluster(
        workers=2,
        tools=[TOOLS, CLIENT_TOOLS],
        services="celery_tools:setup_services",
        concurrency=2,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE)},
    ) as c:
        yield c
