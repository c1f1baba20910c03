"""A run: one execution of a graph, from choosing its executor to its last node.

This is the one home of a run's lifecycle. ``run`` / ``run_async`` / ``submit`` and
``await graph_fn(...)`` all come here with one typed :class:`RunOptions`:

1. :meth:`Run.open` resolves the executor (instance, name or settings) and starts it once per
   process however many runs share it, starts the registered services, paces the GC, and builds
   the :class:`RunScheduler` with the built-in backends of the executor (the Celery executor's
   Redis-backed ones, else the process's own) — nothing process-wide is switched. A progress
   display asked for with ``progress=`` listens next to ``on_event``.
2. The tracing layer runs the graph body into it (:mod:`aethergraph.tracing.execute`).
3. :meth:`Run.finish` waits for every node and raises the run's failure or cancellation;
   :meth:`Run.abort` cancels a run whose body raised and says which error to raise.
4. :meth:`Run.close` draws the progress display's final state, ends GC pacing and takes the
   memory snapshot off the event loop.

A worker-side continuation (workers dispatching a finished node's ready dependents themselves)
fits here without another redesign: readiness lives only in the scheduler's outcome handling, so
an executor that reports "node X done, and I started its dependents Y, Z" would hand the
scheduler outcomes plus adopted jobs through the same queue.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields
from typing import Any

from aethergraph import codec, runtime_loop
from aethergraph.errors import ConfigurationError, RunCancelledError
from aethergraph.execution.base import Executor
from aethergraph.execution.select import ensure_started, needs_start, resolve_executor
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.progress import Progress, ProgressOption, check_progress_option
from aethergraph.scheduling import gc_pacing
from aethergraph.scheduling.events import Listener
from aethergraph.scheduling.scheduler import RunScheduler
from aethergraph.services.builtins.memory import InMemoryMemoryBackend
from aethergraph.services.context import NodeContext
from aethergraph.services.runtime.registry import current_services
from aethergraph.settings import get_settings

log = logging.getLogger("aethergraph")

GRAPH_NODE_ID = "graph"
RECORD_WAIT = 5.0  # seconds a run's end waits for its durable record (a broker outage: not more)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a graph (every entry point takes these; all are optional).

    ``executor``: an ``Executor``, ``"local"``, ``"celery"``, or ``None`` for the settings'
    choice. ``max_concurrency``: nodes running at once (``None``: the settings' value, unbounded
    by default). ``fail_fast``: cancel the rest of the run at the first failed node. ``on_event``:
    a callable for this run's events. ``run_id``: the run's id (a fresh one if ``None``).
    ``progress``: show the run's progress while it runs — ``True``, ``"graph"`` (with the live
    graph picture in a notebook), or ``None``/``False`` for nothing (:mod:`aethergraph.progress`).
    ``resume``: replay the run ``run_id`` — a failed one, or one whose client died — reusing
    its finished nodes and adopting those still on the workers (durable executors only:
    ``execution/celery/resume.py``).
    """

    executor: Executor | str | None = None
    max_concurrency: int | None = None
    fail_fast: bool = False
    on_event: Listener | None = None
    run_id: str | None = None
    progress: ProgressOption = None
    resume: bool = False

    def __post_init__(self) -> None:
        executor = self.executor
        if executor is not None and not isinstance(executor, (Executor, str)):
            raise ConfigurationError(
                f"executor must be an Executor instance or a name like 'local', got {executor!r}"
            )
        limit = self.max_concurrency
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ConfigurationError(
                f"max_concurrency must be a positive int or None, got {limit!r}"
            )
        if not isinstance(self.fail_fast, bool):
            raise ConfigurationError(f"fail_fast must be True or False, got {self.fail_fast!r}")
        if self.on_event is not None and not callable(self.on_event):
            raise ConfigurationError(f"on_event must be callable, got {self.on_event!r}")
        if self.run_id is not None and (not isinstance(self.run_id, str) or not self.run_id):
            raise ConfigurationError(f"run_id must be a non-empty string, got {self.run_id!r}")
        check_progress_option(self.progress)
        if not isinstance(self.resume, bool):
            raise ConfigurationError(f"resume must be True or False, got {self.resume!r}")
        if self.resume and not self.run_id:
            raise ConfigurationError(
                "resume=True needs the run_id of the run to resume: run(gf, ..., "
                "run_id='<id>', resume=True) ('aethergraph runs' lists recent runs)"
            )

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names (a graph input with one of these names cannot be a keyword)."""
        return frozenset(f.name for f in fields(cls))


def _both(first: Listener, second: Listener) -> Listener:
    """One listener calling two: the run's emitter takes one, and the second (the progress
    display) must see every event even when the first raises (the emitter then logs it)."""

    def both(event: Any) -> None:
        try:
            first(event)
        finally:
            second(event)

    return both


async def _prepare(executor: Executor) -> None:
    services = current_services()
    if services.needs_start():
        await services.start_all()
    await ensure_started(executor)


class Run:
    """One run of a graph: its executor, scheduler and context."""

    def __init__(
        self, scheduler: RunScheduler, gc_counted: bool, progress: Progress | None = None
    ) -> None:
        self.scheduler = scheduler
        self.run_id = scheduler.run_id
        self.graph = scheduler.graph
        self.context = NodeContext(
            run_id=scheduler.run_id,
            graph_id=scheduler.graph_id,
            node_id=GRAPH_NODE_ID,
            builtins=scheduler.builtins,
        )
        self._gc_counted = gc_counted
        self._progress = progress
        self._closed = False
        #: the graph's outputs, once it returned them (kept in a durable run's record)
        self.outputs: dict[str, Any] | None = None

    @classmethod
    async def open(cls, graph: TaskGraph, options: RunOptions) -> Run:
        """Start everything the run needs (from any event loop) and return it, running."""
        executor = resolve_executor(options.executor)
        if needs_start(executor) or current_services().needs_start():
            await runtime_loop.run_here(_prepare(executor))
        limit = options.max_concurrency
        if limit is None:
            limit = get_settings().max_concurrency
        if options.run_id:
            graph.run_id = options.run_id
        progress = Progress.for_option(
            options.progress, graph, reports_running=executor.reports_running
        )
        on_event = options.on_event
        if progress is not None:
            on_event = progress if on_event is None else _both(on_event, progress)
        scheduler = RunScheduler(
            graph,
            executor,
            builtins=executor.builtins() or current_services().builtins,
            max_concurrency=limit,
            fail_fast=options.fail_fast,
            on_event=on_event,
        )
        graph_name = graph.graph_id
        executor.run_started(
            scheduler.run_id,
            lambda: {"graph": graph_name, "counts": graph.phase_counts()},
            resume=options.resume,
        )
        return cls(scheduler, gc_pacing.run_started(), progress)

    def cancel(self, reason: str = "cancelled") -> None:
        self.scheduler.cancel(reason)

    async def finish(self) -> None:
        """The body returned: wait for every node; raise the run's failure or cancellation."""
        run = self.scheduler
        run.body_finished()
        try:
            await run.wait_async()
        except asyncio.CancelledError:
            run.cancel("cancelled")
            raise
        if run.status == "failed" and run.failure is not None:
            raise run.failure
        if run.status == "cancelled":
            raise RunCancelledError(run.run_id, run.cancel_reason or "cancelled")

    async def abort(self, exc: BaseException) -> BaseException:
        """The body raised ``exc``: cancel the rest, wait until it settled, and return the error
        to raise — the run's first node failure when the body only saw its consequence (a
        cancelled node's error after ``fail_fast``), else ``exc``."""
        run = self.scheduler
        cancelled = isinstance(exc, asyncio.CancelledError)
        run.cancel(
            "cancelled"
            if cancelled
            else f"cancelled because the graph body raised {type(exc).__name__}"
        )
        run.body_finished()
        try:
            await asyncio.shield(run.wait_async())
        except asyncio.CancelledError:
            if not cancelled:
                raise
        if isinstance(exc, RunCancelledError) and run.failure is not None:
            return run.failure
        return exc

    def _summary(self) -> dict[str, Any] | None:
        """How the run ended, for a durable executor's record (None for the others)."""
        run = self.scheduler
        if not run.executor.durable:
            return None
        result = None
        if self.outputs is not None:
            try:
                result = codec.encode(self.outputs, where="the graph's outputs")
            except Exception:  # kept out of the record; the run itself succeeded
                log.warning("run %s: outputs not kept in its record", self.run_id, exc_info=True)
        return {
            "status": run.status,
            "counts": run.graph.status_counts(),
            "error": str(run.failure) if run.failure else run.cancel_reason,
            "result": result,
        }

    async def close(self) -> Any:
        """Return the run's memory snapshot (read off the event loop); end its GC pacing.

        The progress display is finished here too, in case it missed the run's last event (a run
        ended by an internal error sends none); it draws its final state only once either way.
        """
        if self._closed:
            return None
        self._closed = True
        if self._progress is not None:
            run = self.scheduler
            error = str(run.failure) if run.failure else run.cancel_reason
            self._progress.close(run.status, error)
        recorded = self.scheduler.executor.run_ended(self.run_id, self._summary())
        if recorded is not None:  # the record is final when run() returns (bounded wait)
            try:
                await asyncio.wait_for(asyncio.wrap_future(recorded), RECORD_WAIT)
            except Exception:
                log.warning("run %s: its record's end was not written", self.run_id, exc_info=True)
        memory = self.scheduler.builtins.memory
        try:
            if isinstance(memory, InMemoryMemoryBackend):  # a list copy: no thread hop needed
                return memory.snapshot(self.run_id)
            # a Redis round trip, in the runtime loop's thread pool: it lives as long as the
            # process, where the body's loop (new per run() call) would start a thread per run
            snapshot = asyncio.to_thread(memory.snapshot, self.run_id)
            return await runtime_loop.run_here(snapshot)
        except Exception:
            log.warning("could not read the memory of run %s", self.run_id, exc_info=True)
            return None
        finally:
            gc_pacing.run_finished(self._gc_counted)
