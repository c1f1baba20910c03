"""The executor's background tasks and futures: kept referenced, never failing in silence.

asyncio keeps only weak references to tasks, so a task nobody holds can be collected mid-flight,
and an exception nobody retrieves is lost (at best a "never retrieved" line at garbage
collection). Every task and future the Celery executor starts without awaiting it on the spot —
the dispatcher, the result listener, the lost-message check, unsubscribes, revoke broadcasts —
goes through one :class:`Background`: it holds them until they are done and logs any failure
with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("aethergraph")


class Background:
    """Strong references to running tasks and futures, and a log line for each failure."""

    def __init__(self) -> None:
        self._running: dict[asyncio.Future[Any], str] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task on the running loop (kept until done; failure logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"aethergraph-{what}")
        self.track(task, what)
        return task

    def track(self, future: asyncio.Future[Any], what: str) -> None:
        """Keep ``future`` referenced until it is done, and log its exception if it fails."""
        self._running[future] = what
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        what = self._running.pop(future, "task")
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("celery executor: %s failed", what, exc_info=exc)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until they have stopped."""
        pending = [f for f in self._running if not f.done()]
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.wait(pending)
