"""Waiting for something that finishes on the runtime thread, from any thread or event loop.

Nodes and runs finish on the runtime thread; graph bodies wait for them on the caller's thread —
synchronously (a ref used in an f-string) or asynchronously (``await handle``) on whatever loop the
body runs on. :class:`Waitable` is the small thread-safe primitive both need: an ``is_finished``
flag and a list of wake-up callbacks, guarded by one process-wide lock that is held only for a few
instructions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

_LOCK = threading.Lock()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Waitable:
    """Something that finishes once; threads and coroutines can wait for it."""

    __slots__ = ("is_finished", "waiters")

    def __init__(self) -> None:
        self.is_finished = False
        self.waiters: list[Callable[[], None]] | None = None

    def mark_finished(self) -> None:
        """Set the flag and wake every waiter (call on the thread that finishes the work)."""
        with _LOCK:
            self.is_finished = True
            waiters, self.waiters = self.waiters, None
        if waiters:
            for wake in waiters:
                wake()

    def _add_waiter(self, wake: Callable[[], None]) -> bool:
        with _LOCK:
            if self.is_finished:
                return False
            if self.waiters is None:
                self.waiters = [wake]
            else:
                self.waiters.append(wake)
            return True

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block this thread until finished; False on timeout."""
        if self.is_finished:
            return True
        event = threading.Event()
        if not self._add_waiter(event.set):
            return True
        return event.wait(timeout)

    async def wait_async(self) -> None:
        """Wait in the current event loop until finished."""
        if self.is_finished:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # the waiting loop has been closed meanwhile
                pass

        if not self._add_waiter(wake):
            return
        await fut
