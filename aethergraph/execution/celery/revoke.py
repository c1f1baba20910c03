"""Revoking Celery messages: batched per loop iteration, and delivered before the process exits.

A revoke stops a task: dropped if it is still queued; if it runs on a prefork pool, its process
gets the soft-limit signal, which raises inside a sync tool and cancels an async one — either way
the tool's ``finally`` blocks run and the worker process lives on. (Thread and solo pools cannot
interrupt a running task; it finishes and its outcome is ignored.)

Revokes requested in one loop iteration (a whole run being cancelled) go out as *one* broadcast,
so a slot freed by stopping one task cannot pick up another that is about to be revoked. The
broadcast is a blocking kombu call, so it runs on a thread of its own (:class:`Revoker` keeps a
future for it and logs its failure).

**Cancel, then exit.** A script that cancels a run and exits at once must still stop the
workers: otherwise every queued message of the run is executed. :meth:`Revoker.flush` — called
first thing by ``CeleryExecutor.close()``, which also runs at interpreter exit — sends what is
still pending *synchronously* on a plain thread joined with a time bound (thread pools refuse
new work once the interpreter is shutting down) and waits for broadcasts already under way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from aethergraph.execution.celery.background import Background
from aethergraph.settings import Settings

log = logging.getLogger("aethergraph")

REVOKE_SIGNAL = "SIGUSR1"  # the soft-limit signal: the tool's finally blocks run


class Revoker:
    """Collects task ids to revoke and broadcasts them once per loop iteration."""

    def __init__(self, settings: Settings, background: Background) -> None:
        self._settings = settings
        self._background = background
        self._ids: list[str] = []
        self._app: Any = None
        self._app_lock = threading.Lock()
        self._sending: set[asyncio.Future[None]] = set()
        #: task ids broadcast so far (tests and diagnostics)
        self.revoked = 0

    def revoke(self, task_id: str) -> None:
        """Revoke ``task_id`` at the end of this loop iteration, with the others asked for."""
        if not self._ids:
            asyncio.get_running_loop().call_soon(self._send)
        self._ids.append(task_id)

    def _send(self) -> None:
        ids, self._ids = self._ids, []
        if ids:
            self._background.track(self._start(ids), f"revoking {len(ids)} task(s)")

    def _start(self, ids: list[str]) -> asyncio.Future[None]:
        """Broadcast ``ids`` on a thread of its own; the future settles on this loop.

        A plain thread, not the loop's executor: thread pools refuse new work once the
        interpreter is shutting down, which is exactly when a cancel-then-exit needs it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def send() -> None:
            error: BaseException | None = None
            try:
                self._broadcast(ids)
            except BaseException as exc:  # reported on the loop, through the future
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:  # the loop is gone: nobody is waiting any more
                pass

        threading.Thread(target=send, name="aethergraph-revoke", daemon=True).start()
        self._sending.add(future)
        future.add_done_callback(self._sending.discard)
        return future

    def _broadcast(self, ids: list[str]) -> None:
        with self._app_lock:
            if self._app is None:
                from aethergraph.execution.celery_app import make_celery_app

                self._app = make_celery_app(self._settings)
            app = self._app
        app.control.revoke(ids, terminate=True, signal=REVOKE_SIGNAL)
        self.revoked += len(ids)

    async def flush(self, bound: float) -> None:
        """Deliver every pending revoke now; wait (at most ``bound`` s) until all are sent."""
        self._send()
        pending = list(self._sending)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=bound)
        if late:
            log.error("%d revoke broadcast(s) did not finish within %gs", len(late), bound)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
