"""Entry points: ``run`` (sync), ``run_async`` and ``submit`` (background, cancellable).

``run()`` works in plain scripts and inside an already-running event loop (Jupyter): there it runs
the graph on a helper thread and blocks the cell until the result is in. Ctrl-C cancels the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Generator
from typing import Any

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.execution.base import Executor
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.scheduling.events import Listener
from aethergraph.scheduling.scheduler import RunScheduler
from aethergraph.tracing.execute import execute_graph
from aethergraph.tracing.graph_fn import GraphFunction


def _check_graph(gf: Any) -> GraphFunction:
    if not isinstance(gf, GraphFunction):
        raise ConfigurationError(
            f"expected a @graph_fn GraphFunction, got {gf!r}; decorate the function with "
            "@graph_fn(name=...)"
        )
    return gf


async def run_async(
    gf: GraphFunction,
    /,
    *,
    executor: Executor | str | None = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    """Run a graph and return its outputs (``await gf(**inputs)`` with run options)."""
    _check_graph(gf)
    bound = gf.bind_inputs((), inputs)
    return await execute_graph(
        gf,
        bound,
        executor=executor,
        max_concurrency=max_concurrency,
        fail_fast=fail_fast,
        on_event=on_event,
        run_id=run_id,
    )


class RunHandle:
    """A run started with :func:`submit`: wait for it, cancel it, look at its graph."""

    def __init__(self, gf: GraphFunction, run_id: str) -> None:
        self.graph_function = gf
        self.run_id = run_id
        self._future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._scheduler: RunScheduler | None = None
        self._cancel_requested = False
        self._lock = threading.Lock()

    def _attach(self, scheduler: RunScheduler) -> None:
        with self._lock:
            self._scheduler = scheduler
            cancel = self._cancel_requested
        if cancel:
            scheduler.cancel("cancelled")

    @property
    def graph(self) -> TaskGraph | None:
        """The run's TaskGraph (it fills in while the body traces)."""
        return self._scheduler.graph if self._scheduler is not None else None

    @property
    def status(self) -> str:
        if self._scheduler is not None:
            return self._scheduler.status
        return "starting"

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> None:
        """Cancel the run: queued nodes are dropped, running ones are stopped."""
        with self._lock:
            self._cancel_requested = True
            scheduler = self._scheduler
        if scheduler is not None:
            scheduler.cancel("cancelled")

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run finished; its outputs, or its error raised."""
        return self._future.result(timeout)

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        return f"<RunHandle {self.graph_function.name} run={self.run_id} {self.status}>"


def submit(
    gf: GraphFunction,
    /,
    *,
    executor: Executor | str | None = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    **inputs: Any,
) -> RunHandle:
    """Start a run in the background and return a :class:`RunHandle` at once."""
    _check_graph(gf)
    bound = gf.bind_inputs((), inputs)
    handle = RunHandle(gf, run_id or uuid.uuid4().hex)

    def body() -> None:
        try:
            result = asyncio.run(
                execute_graph(
                    gf,
                    bound,
                    executor=executor,
                    max_concurrency=max_concurrency,
                    fail_fast=fail_fast,
                    on_event=on_event,
                    run_id=handle.run_id,
                    on_run=handle._attach,
                )
            )
        except BaseException as exc:
            handle._future.set_exception(exc)
        else:
            handle._future.set_result(result)

    threading.Thread(target=body, name=f"aethergraph-run-{handle.run_id[:8]}", daemon=True).start()
    return handle


def run(
    gf: GraphFunction,
    /,
    *,
    executor: Executor | str | None = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    """Run a graph and block until its outputs are ready (also inside Jupyter)."""
    _check_graph(gf)
    if runtime_loop.in_runtime_thread():
        raise RuntimeUsageError(
            "run() blocks and cannot be called from a tool running on the runtime thread; "
            "use 'await run_async(...)' in an async tool"
        )
    options: dict[str, Any] = {
        "executor": executor,
        "max_concurrency": max_concurrency,
        "fail_fast": fail_fast,
        "on_event": on_event,
        "run_id": run_id,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(gf, **options, **inputs))
    # An event loop runs in this thread (Jupyter): run on a helper thread and wait for it.
    handle = submit(gf, **options, **inputs)
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle.cancel()
        raise
