"""A graceful stop: SIGTERM lets running nodes finish for a grace period, then hands the rest back.

Slurm (``scancel``, preemption, ``--signal=TERM@N`` before the walltime), Kubernetes (pod
deletion), systemd (``systemctl stop``) all send SIGTERM and, some time later, SIGKILL. On
SIGTERM Celery's warm shutdown stops taking messages and waits for the running ones — without
any limit, so the platform's SIGKILL would end them anyway, counted as deaths. Here:

1. **Running nodes get** ``settings.stop_grace`` **seconds** to finish (``aethergraph worker
   --grace S``, ``AETHERGRAPH_STOP_GRACE``; keep it below the platform's delay before SIGKILL).
   Slurm and systemd signal every process of the job or unit, the pool processes too: a pool
   process ignores a SIGTERM that comes with its worker's graceful stop (a flag in memory shared
   across the fork; the process waits a moment for its parent to raise it), so its node can
   finish; any other SIGTERM (Celery terminating it) still ends it.
2. **When the grace runs out**, every message the worker still holds is *handed back*: removed
   from kombu's unacked hash and announced to its client (``OutcomePusher.push_handback``,
   ``killed=False``), which sends the nodes not yet reported again at once — no death counted,
   no visibility timeout, no wait for missing heartbeats. Then the pool processes are killed
   (prefork) or the process exits (threads, solo: a thread cannot be stopped).

A node that finished before its message was handed back keeps its outcome; one that finishes
right at the end may run twice (at-least-once, see docs/reliability.md).
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.worker import state as worker_state

log = logging.getLogger("aethergraph.worker")

PARENT_WAIT = 1.0  # seconds a pool process waits for its parent to begin a graceful stop
POLL = 0.05  # seconds between looks at the running requests during the grace period

#: hands back one request's message: (task id, the message's keyword arguments) -> None
HandBack = Callable[[str, Any], None]


class GracefulStop:
    """The worker's graceful stop (see the module docstring); made before the pool forks."""

    def __init__(self, grace: float, *, prefork: bool, hand_back: HandBack) -> None:
        self.grace = grace
        self.prefork = prefork
        self._hand_back = hand_back
        self._flag = mmap.mmap(-1, 1)  # shared with the pool processes forked from here
        self._thread: threading.Thread | None = None
        self._protected = 0  # the pool process (pid) whose SIGTERM handler is installed
        self._previous: Any = signal.SIG_DFL
        #: task ids handed back (their pool process's death is then no surprise)
        self.handed_back: set[str] = set()

    @property
    def stopping(self) -> bool:
        return self._flag[0] == 1

    # -- in the main process -----------------------------------------------------------
    def begin(self) -> None:
        """SIGTERM reached the worker (Celery's ``worker_shutting_down``): start the clock."""
        if self.stopping:
            return
        self._flag[0] = 1
        self._thread = threading.Thread(target=self._run, name="aethergraph-stop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.grace
        while worker_state.active_requests and time.monotonic() < deadline:
            time.sleep(POLL)
        held = list(worker_state.reserved_requests)
        if not held:
            return
        log.warning(
            "graceful stop: %d message(s) still running after the %gs grace; handing them back",
            len(held),
            self.grace,
        )
        for request in held:
            task_id = str(request.id)
            self.handed_back.add(task_id)
            try:
                self._hand_back(task_id, request.kwargs)
            except Exception:  # its client's recovery finds it once this worker is gone
                log.exception("graceful stop: could not hand message %s back", task_id)
        if self.prefork:
            from billiard.process import active_children  # type: ignore[import-untyped]

            for child in active_children():
                if child.pid:
                    os.kill(child.pid, signal.SIGKILL)
        else:  # the tool threads cannot be stopped; their messages are handed back already
            logging.shutdown()
            os._exit(0)

    # -- in a pool process -------------------------------------------------------------
    def protect_pool_process(self) -> None:
        """Let this pool process's node finish when SIGTERM comes with a graceful stop.

        Called before each message a pool process runs (one comparison once installed):
        billiard installs its own SIGTERM handler after the process-init signal, so installing
        there would not last. Any other SIGTERM goes on to billiard's handler.
        """
        pid = os.getpid()
        if self._protected != pid:
            self._protected = pid
            self._previous = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: Any) -> None:
        deadline = time.monotonic() + PARENT_WAIT
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.01)  # the same SIGTERM is on its way to the parent
        if self.stopping:
            return  # the parent decides when this process ends
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
