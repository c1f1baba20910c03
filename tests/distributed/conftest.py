"""A LocalCluster of real worker processes on the test Redis, shared by the distributed tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TOOLS = str(HERE / "celery_tools.py")
CLIENT_TOOLS = str(HERE / "client_tools.py")


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
