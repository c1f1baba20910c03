"""Running a graph function: trace the body into a TaskGraph, schedule, wait, normalize.

The body runs on the caller's thread and event loop; the nodes run through the scheduler on the
runtime thread (see ``runtime_loop``). Output normalization follows the seed contract: a dict, a
single NodeHandle, or a single literal/Ref when exactly one output is declared; restricted to the
declared outputs in order; a missing key is an ``OutputContractError`` (a ``ValueError``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aethergraph import runtime_loop
from aethergraph.context import NodeContext, reset_context, set_context
from aethergraph.errors import OutputContractError, RunCancelledError
from aethergraph.execution.base import Executor
from aethergraph.execution.select import ensure_started, needs_start, resolve_executor
from aethergraph.graph.refs import RefBase, collect_refs, substitute
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.scheduling import gc_pacing
from aethergraph.scheduling.events import Listener
from aethergraph.scheduling.scheduler import RunScheduler
from aethergraph.services.runtime.registry import current_services
from aethergraph.settings import get_settings
from aethergraph.tracing.active import active_run
from aethergraph.tracing.handles import NodeHandle, _Bound

if TYPE_CHECKING:
    from aethergraph.tracing.graph_fn import GraphFunction

GRAPH_NODE_ID = "graph"


async def _prepare(executor: Executor) -> None:
    services = current_services()
    if services.needs_start():
        await services.start_all()
    await ensure_started(executor)


def check_declared_keys(gf: GraphFunction, result: Any) -> None:
    """Fail early (before waiting for nodes) when a returned dict lacks a declared output."""
    if gf.outputs and isinstance(result, Mapping) and not isinstance(result, RefBase):
        for key in gf.outputs:
            if key not in result:
                raise OutputContractError(
                    f"graph {gf.name!r} declares outputs {gf.outputs} but its body returned no "
                    f"{key!r} (returned keys: {sorted(map(str, result))})"
                )


def normalize_outputs(
    gf: GraphFunction, result: Any, resolve: Callable[[Any], Any]
) -> dict[str, Any]:
    """The graph's outputs from the body's return value (``resolve`` turns refs into values)."""
    declared = gf.outputs
    if isinstance(result, NodeHandle):
        values: dict[str, Any] = resolve(result)
    elif isinstance(result, Mapping) and not isinstance(result, RefBase):
        values = {str(k): resolve(v) for k, v in result.items()}
    elif result is None:  # returned nothing: every declared output is missing
        values = {}
    elif len(declared) == 1:
        values = {declared[0]: resolve(result)}
    else:
        raise OutputContractError(
            f"graph {gf.name!r} returned a single {type(result).__name__}; that is only valid "
            f"with exactly one declared output (it declares {declared or 'none'}). Return a "
            "dict of outputs, or declare outputs=['name']."
        )
    if declared:
        missing = [key for key in declared if key not in values]
        if missing:
            raise OutputContractError(
                f"graph {gf.name!r} declares outputs {declared} but the result has no "
                f"{missing[0]!r} (got {sorted(values)})"
            )
        values = {key: values[key] for key in declared}
    return values


def _resolve_value(value: Any) -> Any:
    """Replace finished refs/handles (also nested) by their values; raises a failed node's error."""

    def lookup(ref: RefBase) -> Any:
        assert isinstance(ref, _Bound)
        return ref._value()

    return substitute(value, lookup)


async def _call_body(gf: GraphFunction, bound: dict[str, Any], ctx: NodeContext) -> Any:
    kwargs = dict(bound)
    if gf.wants_context:
        kwargs["context"] = ctx
    result = gf.fn(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _wait_refs(value: Any) -> None:
    refs: list[RefBase] = []
    collect_refs(value, refs)
    for ref in refs:
        if isinstance(ref, _Bound) and not ref._state.is_finished:
            await ref._state.wait_async()


async def execute_inline(
    gf: GraphFunction, bound: dict[str, Any], run: RunScheduler
) -> dict[str, Any]:
    """A graph function called inside another body: its nodes join the enclosing run."""
    from aethergraph.context import current_context

    ctx = current_context() or NodeContext(
        run_id=run.run_id, graph_id=run.graph_id, node_id=GRAPH_NODE_ID
    )
    result = await _call_body(gf, bound, ctx)
    check_declared_keys(gf, result)
    await _wait_refs(result)
    return normalize_outputs(gf, result, _resolve_value)


async def execute_graph(
    gf: GraphFunction,
    bound: dict[str, Any],
    *,
    executor: Executor | str | None = None,
    max_concurrency: int | None = None,
    fail_fast: bool = False,
    on_event: Listener | None = None,
    run_id: str | None = None,
    on_run: Callable[[RunScheduler], None] | None = None,
) -> dict[str, Any]:
    """Run ``gf`` with validated inputs ``bound`` as a new run; return its outputs."""
    chosen = resolve_executor(executor)
    if needs_start(chosen) or current_services().needs_start():
        await runtime_loop.run_here(_prepare(chosen))
    if max_concurrency is None:
        max_concurrency = get_settings().max_concurrency
    gc_pacing.run_started()
    try:
        return await _execute(
            gf, bound, chosen, max_concurrency, fail_fast, on_event, run_id, on_run
        )
    finally:
        gc_pacing.run_finished()


async def _execute(
    gf: GraphFunction,
    bound: dict[str, Any],
    chosen: Executor,
    max_concurrency: int | None,
    fail_fast: bool,
    on_event: Listener | None,
    run_id: str | None,
    on_run: Callable[[RunScheduler], None] | None,
) -> dict[str, Any]:
    graph = TaskGraph(
        gf.graph_id,
        run_id=run_id or "",
        version=gf.version,
        inputs=dict(bound),
        outputs=gf.outputs or None,
    )
    run = RunScheduler(
        graph, chosen, max_concurrency=max_concurrency, fail_fast=fail_fast, on_event=on_event
    )
    if on_run is not None:
        on_run(run)
    ctx = NodeContext(run_id=run.run_id, graph_id=gf.graph_id, node_id=GRAPH_NODE_ID)
    gf.last_graph = graph
    gf.last_context = ctx
    run_token = active_run.set(run)
    ctx_token = set_context(ctx)
    try:
        try:
            result = await _call_body(gf, bound, ctx)
            graph.result_refs = result
            check_declared_keys(gf, result)
        finally:
            active_run.reset(run_token)
            reset_context(ctx_token)
    except BaseException as exc:
        reason = (
            "cancelled"
            if isinstance(exc, asyncio.CancelledError)
            else (f"cancelled because the graph body raised {type(exc).__name__}")
        )
        run.cancel(reason)
        run.body_finished()
        await _settle(run)
        _snapshot_memory(gf, run)
        raise
    run.body_finished()
    try:
        await run.wait_async()
    except asyncio.CancelledError:
        run.cancel("cancelled")
        raise
    _snapshot_memory(gf, run)
    if run.status == "failed" and run.failure is not None:
        raise run.failure
    if run.status == "cancelled":
        raise RunCancelledError(run.run_id, run.cancel_reason or "cancelled")
    return normalize_outputs(gf, result, _resolve_value)


async def _settle(run: RunScheduler) -> None:
    """Wait (shielded from our own cancellation) until a cancelled run has settled."""
    try:
        await asyncio.shield(run.wait_async())
    except asyncio.CancelledError:
        pass


def _snapshot_memory(gf: GraphFunction, run: RunScheduler) -> None:
    try:
        gf.last_memory_snapshot = current_services().builtins.memory.snapshot(run.run_id)
    except Exception:
        gf.last_memory_snapshot = None
