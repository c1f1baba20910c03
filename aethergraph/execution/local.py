"""``LocalExecutor``: runs nodes in this process, on the runtime loop.

Async tools run as tasks on the runtime loop. Sync tools run on a pool of worker threads by
default, so a blocking tool (file I/O, a C extension, ``time.sleep``) does not stall every other
node; ``sync_tools="inline"`` calls them directly on the loop instead, which is fastest for
tools known to be quick. Threads take jobs from one queue and hand outcomes back in bursts (one
loop wake-up per burst, not per node), and are started only as the queue needs them.

A timed-out sync tool is reported as failed at once, but its thread cannot be interrupted and
finishes in the background (its late result is ignored).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections import deque
from collections.abc import Sequence
from typing import Literal

from aethergraph.errors import ConfigurationError, NodeTimeoutError
from aethergraph.execution.base import DoneCallback, Executor, NodeJob, NodeOutcome, failure_from
from aethergraph.execution.invoke import invoke_async, invoke_sync

_Item = tuple[NodeJob, DoneCallback]


class _ThreadLane:
    """Worker threads for sync tools, feeding outcomes back to the loop in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_threads: int) -> None:
        self._loop = loop
        self._max_threads = max_threads
        self._jobs: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._done: deque[tuple[NodeJob, DoneCallback, NodeOutcome]] = deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._queued = 0
        # loop-thread state, by job key: queued jobs that must not start, armed timeout timers,
        # and jobs already reported as timed out (their late outcome is dropped)
        self.cancelled: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: set[str] = set()

    def put(self, job: NodeJob, on_done: DoneCallback) -> None:
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and len(self._threads) < self._max_threads
            if spawn:
                thread = threading.Thread(
                    target=self._work, name=f"aethergraph-tool-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
        if spawn:
            thread.start()
        self._jobs.put((job, on_done))

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        with lock:
            self._idle += 1
        while True:
            item = jobs.get()
            with lock:
                self._idle -= 1
                self._queued -= 1
            if item is None:
                return
            job, on_done = item
            del item  # an idle thread must not pin the last job (and its run) while it waits
            outcome = self._run(job, on_done)
            # Idle again *before* the outcome is reported: the dependents it releases are queued
            # for this thread, which only has to return to ``get()``, instead of making ``put``
            # start another thread (a chain then hopped between threads, each woken cold).
            with lock:
                self._idle += 1
            if outcome is not None and not self._report(job, on_done, outcome):
                with lock:
                    self._idle -= 1
                return
            del job, on_done, outcome

    def _run(self, job: NodeJob, on_done: DoneCallback) -> NodeOutcome | None:
        """Run a job in this thread; None when it was cancelled while queued."""
        if self.cancelled and job.key in self.cancelled:
            self._loop.call_soon_threadsafe(self.cancelled.discard, job.key)
            return None
        if job.timeout is not None:  # the clock starts when the tool starts, not when queued
            self._loop.call_soon_threadsafe(self._arm_timer, job, on_done)
        return contextvars.Context().run(invoke_sync, job)

    def _report(self, job: NodeJob, on_done: DoneCallback, outcome: NodeOutcome) -> bool:
        """Hand an outcome back; False once the loop is closed (shutdown: the thread ends)."""
        try:
            if job.timeout is None:  # nothing to settle on the loop: report from here
                on_done(job, outcome)  # thread-safe: it only enqueues (see base)
                return True
            self._done.append((job, on_done, outcome))  # its timer lives on the loop: settle there
            if not self._wake_pending:
                self._wake_pending = True
                self._loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop was closed at shutdown
            return False
        return True

    def _arm_timer(self, job: NodeJob, on_done: DoneCallback) -> None:
        if job.timeout is not None and job.key not in self._timers:
            self._timers[job.key] = self._loop.call_later(job.timeout, self._time_out, job, on_done)

    def _time_out(self, job: NodeJob, on_done: DoneCallback) -> None:
        self._timers.pop(job.key, None)
        self._timed_out.add(job.key)
        exc = NodeTimeoutError(
            f"tool {job.tool.name!r} exceeded its timeout of {job.timeout}s "
            "(its thread keeps running in the background)"
        )
        on_done(job, NodeOutcome(failure=failure_from(exc)))

    def cancel_timer(self, job: NodeJob) -> None:
        timer = self._timers.pop(job.key, None)
        if timer is not None:
            timer.cancel()

    def _flush(self) -> None:
        self._wake_pending = False
        done = self._done
        while done:
            job, on_done, outcome = done.popleft()
            if job.timeout is not None:
                self.cancel_timer(job)
                if job.key in self._timed_out:
                    self._timed_out.discard(job.key)
                    continue
            on_done(job, outcome)

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()


class LocalExecutor(Executor):
    """The in-process executor."""

    name = "local"

    def __init__(
        self, *, sync_tools: Literal["thread", "inline"] = "thread", max_threads: int = 32
    ) -> None:
        if sync_tools not in ("thread", "inline"):
            raise ConfigurationError(f"sync_tools must be 'thread' or 'inline', got {sync_tools!r}")
        if not isinstance(max_threads, int) or max_threads < 1:
            raise ConfigurationError(f"max_threads must be an int >= 1, got {max_threads!r}")
        self.sync_tools = sync_tools
        self.max_threads = max_threads
        self._lane: _ThreadLane | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # running async jobs by job key

    async def close(self) -> None:
        if self._lane is not None:
            self._lane.stop()
            self._lane = None

    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        loop = asyncio.get_running_loop()
        inline = self.sync_tools == "inline"
        for job in jobs:
            if job.tool.is_async:
                self._tasks[job.key] = loop.create_task(self._run_async(job, on_done))
            elif inline and job.timeout is None:
                on_done(job, invoke_sync(job))
            else:
                lane = self._lane
                if lane is None:
                    lane = self._lane = _ThreadLane(loop, self.max_threads)
                lane.put(job, on_done)

    def cancel(self, job: NodeJob) -> None:
        task = self._tasks.pop(job.key, None)
        if task is not None:
            task.cancel()
            return
        lane = self._lane
        if lane is not None and not job.tool.is_async:
            lane.cancel_timer(job)
            lane.cancelled.add(job.key)  # a queued sync job is dropped, never started

    async def _run_async(self, job: NodeJob, on_done: DoneCallback) -> None:
        try:
            outcome = await invoke_async(job, own_task=True)
        finally:
            self._tasks.pop(job.key, None)
        on_done(job, outcome)
