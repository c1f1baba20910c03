"""Started notices: a worker tells the client which of its nodes are really running.

A client knows when it *sent* a node, not when a worker began it: between the two the message
may wait in the broker's queue or in a worker's prefetch (Celery reserves messages beyond its
free slots). Counting sent nodes as running would show twice as many running nodes as slots,
so a worker reports a node once its tool has been running for :data:`NOTICE_AFTER` seconds: a
small ``{"task_id", "started": true, "at"}`` message on the client's result list, the path its
outcome takes too. The client then marks the node running (its ``running`` event, the progress
table, the picture, ``aethergraph status``).

Why only after a delay: a notice is one Redis round trip, which would be a large share of a tool
that takes microseconds — and for such a tool "running" is a passing state nobody needs to see
(its node goes from queued to done). A tool with a timeout is reported at once instead, by the
runtime, since its client's backstop clock starts with that notice.

One daemon thread per process keeps the clock, started lazily (after a prefork child's fork,
which threads do not survive). Beginning and ending a node are two dict operations on the hot
path; the thread wakes every :data:`TICK` seconds and sends what is due. A notice that fails to
send is logged and dropped: the node's outcome still comes, and the client still counts it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("aethergraph.worker")

NOTICE_AFTER = 0.1  # seconds a tool runs before its client is told it is running
TICK = 0.05  # seconds between two looks at the running nodes

#: sends one notice: ``(client id, outcome id, wall-clock time the tool began)``
Send = Callable[[str, str, float], None]


class StartedNotices:
    """Reports nodes running longer than ``after`` seconds to their clients, through ``send``."""

    def __init__(self, send: Send, after: float = NOTICE_AFTER, tick: float = TICK) -> None:
        self._send = send
        self._after = after
        self._tick = tick
        #: outcome id -> (client, wall-clock start, monotonic time the notice is due)
        self._running: dict[str, tuple[str, float, float]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = threading.Event()

    def begin(self, client: str, outcome_id: str) -> None:
        """A node's tool starts now in this process."""
        self._running[outcome_id] = (client, time.time(), time.monotonic() + self._after)
        if self._thread is None or self._pid != os.getpid():
            self._start()  # two threads of a threads pool may both start one: harmless, since
            # a notice is sent by whichever watcher pops it first

    def end(self, outcome_id: str) -> None:
        """The node's tool returned (or raised): no notice is due any more."""
        self._running.pop(outcome_id, None)

    def close(self) -> None:
        """Stop the watcher thread (a worker process just exits; tests close theirs)."""
        self._closed.set()

    def _start(self) -> None:
        self._pid = os.getpid()  # a forked child starts its own thread
        self._thread = threading.Thread(
            target=self._watch, name="aethergraph-started-notices", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        while not self._closed.wait(self._tick):
            if not self._running:
                continue
            now = time.monotonic()
            # a copy (one C-level call, atomic under the GIL): the worker thread keeps mutating
            for outcome_id, (client, began, due) in self._running.copy().items():
                if due <= now and self._running.pop(outcome_id, None) is not None:
                    try:
                        self._send(client, outcome_id, began)
                    except Exception:
                        log.warning(
                            "could not tell client %s that node %s is running",
                            client,
                            outcome_id,
                            exc_info=True,
                        )
