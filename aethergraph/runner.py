"""Entry points: ``run`` (sync), ``run_async`` and ``submit`` (background, cancellable).

They are thin doors onto a run (:mod:`aethergraph.scheduling.run`): each validates the graph,
its inputs and one :class:`RunOptions`, then opens the run and traces the body into it.

``run()`` works in plain scripts and inside an already-running event loop (Jupyter): there it runs
the graph on a helper thread and blocks the cell until the result is in. Ctrl-C cancels the run.

``executor=`` takes an executor, a name (``"local"``, ``"celery"``), or a cluster — anything with
an ``__aethergraph_executor__()`` method (``LocalCluster``, ``SlurmCluster``, ``PBSCluster``),
which gives its executor, starting the cluster if need be.

``progress=True`` shows the run while it runs: a live table in Jupyter, a tqdm bar on a
terminal, periodic lines in a log (:mod:`aethergraph.progress`); ``progress="graph"`` adds the
live graph picture in Jupyter. A :class:`RunHandle` shows its run's status in Jupyter too.

Graph inputs are keyword arguments. An input whose name is also a run option (``executor``,
``run_id``, ``progress``, ...) goes in the positional mapping instead:
``run(gf, {"executor": "x"})``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
import uuid
from collections.abc import Generator, Mapping
from typing import Any, Protocol, runtime_checkable

from aethergraph import runtime_loop
from aethergraph.errors import ConfigurationError, GraphInputError, RuntimeUsageError
from aethergraph.execution.base import Executor
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.progress import ProgressOption, graph_snapshot, snapshot_html
from aethergraph.scheduling.events import Listener
from aethergraph.scheduling.run import Run, RunOptions
from aethergraph.scheduling.scheduler import RunScheduler
from aethergraph.tracing.execute import execute_graph, new_graph, trace_into
from aethergraph.tracing.graph_fn import GraphFunction


@runtime_checkable
class ExecutorSource(Protocol):
    """A cluster (or anything) that provides the executor to run on: ``executor=cluster``."""

    def __aethergraph_executor__(self) -> Executor: ...


AnyExecutor = Executor | str | ExecutorSource | None


def _executor(executor: AnyExecutor) -> Executor | str | None:
    """The executor option as the run sees it: a cluster gives its own executor."""
    if isinstance(executor, ExecutorSource) and not isinstance(executor, Executor | str):
        return executor.__aethergraph_executor__()
    return executor


def _options(
    executor: AnyExecutor,
    max_concurrency: int | None,
    fail_fast: bool,
    on_event: Listener | None,
    run_id: str | None,
    progress: ProgressOption,
    resume: bool,
) -> RunOptions:
    return RunOptions(
        executor=_executor(executor),
        max_concurrency=max_concurrency,
        fail_fast=fail_fast,
        on_event=on_event,
        run_id=run_id,
        progress=progress,
        resume=resume,
    )


def _check_graph(gf: Any) -> GraphFunction:
    if not isinstance(gf, GraphFunction):
        raise ConfigurationError(
            f"expected a @graph_fn GraphFunction, got {gf!r}; decorate the function with "
            "@graph_fn(name=...)"
        )
    return gf


def _bind(
    gf: GraphFunction, given: Mapping[str, Any] | None, keywords: dict[str, Any]
) -> dict[str, Any]:
    """The graph's inputs from the positional mapping and the keyword arguments."""
    if given is None:
        return gf.bind_inputs((), keywords)
    if not isinstance(given, Mapping):
        raise GraphInputError(
            f"graph {gf.name!r}: inputs must be a mapping of input names to values, got "
            f"{type(given).__name__}; pass inputs by name, e.g. run(gf, x=1)"
        )
    both = sorted(set(given) & set(keywords))
    if both:
        raise GraphInputError(f"graph {gf.name!r} got input(s) {both} twice")
    return gf.bind_inputs((), {**given, **keywords})


async def run_async(
    gf: GraphFunction,
    inputs: Mapping[str, Any] | None = None,
    /,
    *,
    executor: AnyExecutor = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    progress: ProgressOption = None,
    resume: bool = False,
    **keyword_inputs: Any,
) -> dict[str, Any]:
    """Run a graph and return its outputs (``await gf(**inputs)`` with run options)."""
    graph = _check_graph(gf)
    options = _options(executor, max_concurrency, fail_fast, on_event, run_id, progress, resume)
    return await execute_graph(graph, _bind(graph, inputs, keyword_inputs), options)


class RunHandle:
    """A run started with :func:`submit`: wait for it, cancel it, look at its graph."""

    def __init__(self, gf: GraphFunction, run_id: str) -> None:
        self.graph_function = gf
        self.run_id = run_id
        self._future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._scheduler: RunScheduler | None = None
        self._cancel_requested = False
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._future.add_done_callback(self._mark_ended)

    def _mark_ended(self, _: concurrent.futures.Future[dict[str, Any]]) -> None:
        self._ended = time.monotonic()

    def _attach(self, run: Run) -> None:
        with self._lock:
            self._scheduler = run.scheduler
            cancel = self._cancel_requested
        if cancel:
            run.cancel("cancelled")

    @property
    def graph(self) -> TaskGraph | None:
        """The run's TaskGraph (it fills in while the body traces)."""
        return self._scheduler.graph if self._scheduler is not None else None

    @property
    def status(self) -> str:
        if self._scheduler is not None:
            return self._scheduler.status
        return "failed" if self._future.done() else "starting"  # failed before it opened

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

    def _repr_html_(self) -> str:
        """The run in a notebook: graph, run id, state, nodes by tool and status, and the graph
        picture — read from the graph when shown, so showing the handle again shows it anew."""
        graph = self.graph
        if graph is None:  # not open yet (or failed before it opened): no nodes to show
            graph = TaskGraph(self.graph_function.graph_id, run_id=self.run_id)
        error = None
        if self._future.done() and not self._future.cancelled():
            exc = self._future.exception()
            error = f"{type(exc).__name__}: {exc}" if exc is not None else None
        elapsed = (self._ended if self._ended is not None else time.monotonic()) - self._started
        snap = graph_snapshot(
            graph, state=self.status, elapsed=elapsed, error=error, picture=len(graph) > 0
        )
        return snapshot_html(snap)


def submit(
    gf: GraphFunction,
    inputs: Mapping[str, Any] | None = None,
    /,
    *,
    executor: AnyExecutor = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    progress: ProgressOption = None,
    resume: bool = False,
    **keyword_inputs: Any,
) -> RunHandle:
    """Start a run in the background and return a :class:`RunHandle` at once."""
    graph = _check_graph(gf)
    options = _options(executor, max_concurrency, fail_fast, on_event, run_id, progress, resume)
    return _start(graph, _bind(graph, inputs, keyword_inputs), options)


def _start(graph: GraphFunction, bound: dict[str, Any], options: RunOptions) -> RunHandle:
    """Run ``graph`` with validated inputs on a thread of its own; its handle at once."""
    handle = RunHandle(graph, options.run_id or uuid.uuid4().hex)
    options = dataclasses.replace(options, run_id=handle.run_id)

    async def go() -> dict[str, Any]:
        run = await Run.open(new_graph(graph, bound, options), options)
        handle._attach(run)
        return await trace_into(graph, bound, run)

    def body() -> None:
        try:
            result = asyncio.run(go())
        except BaseException as exc:
            handle._future.set_exception(exc)
        else:
            handle._future.set_result(result)

    threading.Thread(target=body, name=f"aethergraph-run-{handle.run_id[:8]}", daemon=True).start()
    return handle


def run(
    gf: GraphFunction,
    inputs: Mapping[str, Any] | None = None,
    /,
    *,
    executor: AnyExecutor = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    progress: ProgressOption = None,
    resume: bool = False,
    **keyword_inputs: Any,
) -> dict[str, Any]:
    """Run a graph and block until its outputs are ready (also inside Jupyter).

    ``run_id=ID, resume=True`` replays run ``ID`` (on a durable executor: Celery, a cluster):
    nodes that finished reuse their outcomes, nodes still on the workers are adopted, only the
    rest run — after a failure, or after the kernel that started it died (docs/notebooks.md).
    """
    graph = _check_graph(gf)
    if runtime_loop.in_runtime_thread():
        raise RuntimeUsageError(
            "run() blocks and cannot be called from a tool running on the runtime thread; "
            "use 'await run_async(...)' in an async tool"
        )
    options = _options(executor, max_concurrency, fail_fast, on_event, run_id, progress, resume)
    bound = _bind(graph, inputs, keyword_inputs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(execute_graph(graph, bound, options))
    # An event loop runs in this thread (Jupyter): run on a helper thread and wait for it.
    handle = _start(graph, bound, options)
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle.cancel()
        raise
