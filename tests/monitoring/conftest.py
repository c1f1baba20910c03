"""A LocalCluster serving the monitoring tools, on the session's private Redis."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until  # noqa: F401  # the tests import it from here

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TOOLS = str(HERE / "monitor_tools.py")


@pytest.fixture(scope="package")
def monitored(redis_url: str) -> Iterator[Any]:
    """Two prefork workers, 2 slots each, serving monitor_tools.py, with metrics on free ports."""
    from aethergraph.cluster import LocalCluster

    with LocalCluster(
        workers=2,
        tools=[TOOLS],
        concurrency=2,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE)},
    ) as cluster:
        yield cluster
