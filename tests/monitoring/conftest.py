"""A LocalCluster serving the monitoring tools, on the session's private Redis."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TOOLS = str(HERE / "monitor_tools.py")


def wait_until(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``probe`` (bounded) for a state in another process that offers no event to await
    (Flower's HTTP API, a scrape endpoint); return its first truthy value."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        pause.wait(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
