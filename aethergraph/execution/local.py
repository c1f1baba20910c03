"""``LocalExecutor``: runs nodes in this process, on the runtime loop.

Async tools run as tasks on the runtime loop. Sync tools run on a thread pool by default, so a
blocking tool (file I/O, a C extension, ``time.sleep``) does not stall every other node; pass
``sync_tools="inline"`` to call them directly on the loop when they are known to be quick.
A timed-out sync tool is reported as failed at once, but its thread cannot be interrupted and
finishes in the background.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from aethergraph.errors import ConfigurationError, NodeTimeoutError
from aethergraph.execution.base import DoneCallback, Executor, NodeJob, NodeOutcome
from aethergraph.execution.invoke import failure_from, invoke_async, invoke_sync


class LocalExecutor(Executor):
    """The in-process executor."""

    name = "local"

    def __init__(
        self, *, sync_tools: Literal["thread", "inline"] = "thread", max_threads: int = 32
    ) -> None:
        if sync_tools not in ("thread", "inline"):
            raise ConfigurationError(f"sync_tools must be 'thread' or 'inline', got {sync_tools!r}")
        if max_threads < 1:
            raise ConfigurationError(f"max_threads must be >= 1, got {max_threads!r}")
        self.sync_tools = sync_tools
        self.max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        loop = asyncio.get_running_loop()
        inline = self.sync_tools == "inline"
        for job in jobs:
            if job.tool.is_async:
                job.executor_state = loop.create_task(_run_async(job, on_done))
            elif inline and job.timeout is None:
                on_done(job, invoke_sync(job))
            else:
                job.executor_state = loop.create_task(self._run_in_thread(job, on_done))

    async def _run_in_thread(self, job: NodeJob, on_done: DoneCallback) -> object:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="aethergraph-tool")
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        try:
            future = loop.run_in_executor(self._pool, ctx.run, invoke_sync, job)
            if job.timeout is None:
                outcome = await future
            else:
                try:
                    outcome = await asyncio.wait_for(future, job.timeout)
                except TimeoutError:
                    exc = NodeTimeoutError(
                        f"tool {job.tool.name!r} exceeded its timeout of {job.timeout}s "
                        "(its thread keeps running in the background)"
                    )
                    outcome = NodeOutcome(failure=failure_from(exc))
        finally:
            job.executor_state = None
        on_done(job, outcome)
        return None

    def cancel(self, job: NodeJob) -> None:
        task = job.executor_state
        if isinstance(task, asyncio.Task):
            task.cancel()


async def _run_async(job: NodeJob, on_done: DoneCallback) -> None:
    outcome = await invoke_async(job, own_task=True)
    job.executor_state = None
    on_done(job, outcome)
