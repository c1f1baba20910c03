"""Tracing a graph body into a run, and turning what it returned into the graph's outputs.

The run itself — executor, scheduler, lifecycle — lives in :mod:`aethergraph.scheduling.run`;
this module only does what is specific to tracing: call the body with the run active (so its
``@tool`` calls become nodes), then normalize the outputs. The body runs on the caller's thread
and event loop; the nodes run through the scheduler on the runtime thread (see
``runtime_loop``). Output normalization follows the seed contract: a dict, a single NodeHandle,
or a single literal/Ref when exactly one output is declared; restricted to the declared outputs
in order; a missing key is an ``OutputContractError`` (a ``ValueError``). Values are resolved
with ``await`` — loading offloaded (large) outputs never blocks the caller's event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aethergraph.errors import OutputContractError
from aethergraph.graph.refs import RefBase, RefSpec, collect_refs, substitute
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.scheduling.run import GRAPH_NODE_ID, Run, RunOptions
from aethergraph.scheduling.scheduler import RunScheduler
from aethergraph.services.context import NodeContext, current_context, reset_context, set_context
from aethergraph.tracing.active import active_run
from aethergraph.tracing.handles import NodeHandle, _Bound


class TracedGraph(Protocol):
    """What running a body needs of a graph function (``GraphFunction`` has it)."""

    name: str
    graph_id: str
    version: str
    outputs: list[str]
    fn: Callable[..., Any]

    @property
    def wants_context(self) -> bool: ...

    def remember(self, graph: TaskGraph, context: NodeContext, snapshot: Any) -> None: ...


def check_declared_keys(gf: TracedGraph, result: Any) -> None:
    """Fail early (before waiting for nodes) when a returned dict lacks a declared output."""
    if gf.outputs and isinstance(result, Mapping) and not isinstance(result, RefBase):
        for key in gf.outputs:
            if key not in result:
                raise OutputContractError(
                    f"graph {gf.name!r} declares outputs {gf.outputs} but its body returned no "
                    f"{key!r} (returned keys: {sorted(map(str, result))})"
                )


def normalize_outputs(
    gf: TracedGraph, result: Any, resolve: Callable[[Any], Any]
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


async def _outputs_of(gf: TracedGraph, result: Any) -> dict[str, Any]:
    """Wait for every ref in ``result``, load its value (awaited), then normalize."""
    refs: list[RefBase] = []
    collect_refs(result, refs)
    values: dict[int, Any] = {}
    for ref in refs:
        if isinstance(ref, _Bound) and id(ref) not in values:
            values[id(ref)] = await ref._value_async()
    return normalize_outputs(gf, result, lambda v: substitute(v, lambda r: values[id(r)]))


async def _call_body(gf: TracedGraph, bound: dict[str, Any], ctx: NodeContext) -> Any:
    kwargs = dict(bound)
    if gf.wants_context:
        kwargs["context"] = ctx
    result = gf.fn(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def execute_inline(
    gf: TracedGraph, bound: dict[str, Any], run: RunScheduler
) -> dict[str, Any]:
    """A graph function called inside another body: its nodes join the enclosing run."""
    ctx = current_context() or NodeContext(
        run_id=run.run_id, graph_id=run.graph_id, node_id=GRAPH_NODE_ID, builtins=run.builtins
    )
    result = await _call_body(gf, bound, ctx)
    check_declared_keys(gf, result)
    return await _outputs_of(gf, result)


def new_graph(gf: TracedGraph, bound: dict[str, Any], options: RunOptions) -> TaskGraph:
    return TaskGraph(
        gf.graph_id,
        run_id=options.run_id or "",
        version=gf.version,
        inputs=dict(bound),
        outputs=gf.outputs or None,
    )


async def _trace_body(gf: TracedGraph, bound: dict[str, Any], run: Run) -> Any:
    run_token = active_run.set(run.scheduler)
    ctx_token = set_context(run.context)
    try:
        result = await _call_body(gf, bound, run.context)
    finally:
        active_run.reset(run_token)
        reset_context(ctx_token)
    # the graph keeps what the body returned as plain data (no live handles, so no values)
    run.graph.result_refs = substitute(result, lambda r: RefSpec(r._ref_node, r._ref_path))
    check_declared_keys(gf, result)
    return result


async def trace_into(gf: TracedGraph, bound: dict[str, Any], run: Run) -> dict[str, Any]:
    """Run ``gf``'s body into the open ``run``, wait for its nodes, return its outputs.

    ``gf.last_graph`` shows the graph while it runs; at the end graph, context and memory
    snapshot are recorded together, from the same run (concurrent runs of one graph function
    never mix them).
    """
    ctx = run.context
    gf.remember(run.graph, ctx, None)
    try:
        result = await _trace_body(gf, bound, run)
    except BaseException as exc:
        error = await run.abort(exc)
        gf.remember(run.graph, ctx, await run.close())
        if error is exc:
            raise
        raise error from exc
    try:
        await run.finish()
        run.outputs = await _outputs_of(gf, result)
        return run.outputs
    finally:
        gf.remember(run.graph, ctx, await run.close())


async def execute_graph(
    gf: TracedGraph, bound: dict[str, Any], options: RunOptions | None = None
) -> dict[str, Any]:
    """Run ``gf`` with validated inputs ``bound`` as a new run; return its outputs."""
    options = options or RunOptions()
    run = await Run.open(new_graph(gf, bound, options), options)
    return await trace_into(gf, bound, run)
