"""Small helpers shared by the backend contracts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
WAIT = 10.0  # seconds: generous upper bound for anything that should take milliseconds


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop (as a sync tool's thread or a worker would)."""
    return asyncio.run(coro)


def in_threads(target: Callable[[int], None], n: int) -> None:
    """Run ``target(i)`` on ``n`` threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Await ``condition()`` until true, bounded by WAIT: for events no one can notify us of
    (a server-side expiry, a reconnect seen only by the server)."""
    deadline = time.monotonic() + WAIT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)
