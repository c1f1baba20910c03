"""Bounded polling for states in other processes that offer no event to await, and stopping
the process groups a test started."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    probe: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.02
) -> Any:
    """Wait (bounded) for a condition in another process that offers no event to await (a live
    message travelling apart from the result, a worker's queue draining, Flower's API, a scrape
    endpoint); return the probe's first truthy value, or fail naming ``what``."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        pause.wait(every)
    raise AssertionError(f"timed out waiting for {what}")


def stop_group(proc: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM the process group a test started (``start_new_session=True``), SIGKILL it if it
    is still there after ``grace`` seconds; wait for the leader either way."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
