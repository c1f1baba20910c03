"""The queue executors report outcomes into; the scheduler drains it in a loop iteration of its own.

This is what keeps executors from ever re-entering the scheduler (dask's ``local.py`` pattern:
``add_done_callback(queue.put)`` … ``queue_get(queue)``). ``report`` only appends and, once per
burst, schedules a drain on the runtime loop; while the drain runs, outcomes reported from
inside it (an inline executor finishing the next node of a chain at once) join the same queue,
so any chain runs iteratively and the stack never grows with it.

``report`` is safe to call from any thread (a tool thread reports straight into the queue, with
no hop through an executor callback on the loop first). The drain clears ``_pending`` *before*
it empties the queue, so an outcome appended at any moment is either seen by this drain or
makes its reporter schedule the next one — none is left waiting.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable

from aethergraph import runtime_loop
from aethergraph.execution.base import NodeJob, NodeOutcome

Handler = Callable[[NodeJob, NodeOutcome], None]


class OutcomeQueue:
    """Outcomes waiting for the scheduler, and the one pending drain of them.

    The queue belongs to its scheduler but holds it only weakly (``handle`` and ``guard`` are
    the scheduler's methods): a strong reference back would make a reference cycle of every
    finished run — the scheduler, its node table, every node's state — that only the cyclic
    garbage collector could free, long after the run. Outcomes reported after the scheduler is
    gone (a late outcome of a run nobody holds) are dropped.
    """

    __slots__ = ("_guard", "_handle", "_items", "_pending")

    def __init__(self, handle: Handler, guard: Callable[..., None]) -> None:
        self._handle = weakref.WeakMethod(handle)
        # runs the drain so that an exception fails the run, never hangs it
        self._guard = weakref.WeakMethod(guard)
        self._items: deque[tuple[NodeJob, NodeOutcome]] = deque()
        self._pending = False

    def report(self, job: NodeJob, outcome: NodeOutcome) -> None:
        """The executors' ``on_done``: enqueue, and wake the scheduler once per burst."""
        self._items.append((job, outcome))
        if not self._pending:
            guard = self._guard()
            if guard is None:  # the run is gone: nobody to tell
                self._items.clear()
                return
            self._pending = True
            runtime_loop.call_soon(guard, self._drain)

    def _drain(self) -> None:
        self._pending = False
        items, handle = self._items, self._handle()
        if handle is None:
            items.clear()
            return
        while items:
            job, outcome = items.popleft()
            handle(job, outcome)
