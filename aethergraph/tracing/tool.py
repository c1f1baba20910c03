"""``@tool``: a function whose calls inside a graph body become nodes.

Outside a graph body a tool is plain Python: a sync tool returns its outputs dict, an async tool
returns an awaitable of it. Inside a body the call returns a :class:`NodeHandle` at once and the
node is scheduled at once — no ``await`` is needed for it to run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

from aethergraph.errors import ConfigurationError, ConfigurationTypeError
from aethergraph.graph.refs import ATOMIC_TYPES, RefBase, collect_refs
from aethergraph.graph.tool_spec import ToolPolicy, ToolSpec
from aethergraph.registry import current_registry
from aethergraph.services.context import NodeContext, current_context, reset_context, set_context
from aethergraph.tracing.active import active_run
from aethergraph.tracing.handles import NodeHandle


def _check_outputs(name: str, outputs: Any) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if isinstance(outputs, str) or not all(isinstance(o, str) and o for o in outputs):
        raise ConfigurationError(
            f"tool {name!r}: outputs must be a list of output names, e.g. outputs=['total'], "
            f"got {outputs!r}"
        )
    result = tuple(outputs)
    if len(set(result)) != len(result):
        raise ConfigurationError(f"tool {name!r}: duplicate names in outputs {list(result)}")
    return result


class Tool:
    """A decorated tool: callable like the original function, traced inside graph bodies."""

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def outputs(self) -> list[str]:
        return list(self.spec.outputs or ())

    @property
    def version(self) -> str:
        return self.spec.version

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = active_run.get()
        if run is None:
            return self._call_plain(args, kwargs)
        spec = self.spec
        # fast path: keyword call with valid names (the dict is ours: Python built it for us)
        if (
            not args
            and "context" not in kwargs
            and spec.required <= kwargs.keys()
            and (spec.accepts_var_kw or kwargs.keys() <= spec.params)
        ):
            inputs = kwargs
        else:
            inputs = spec.bind(args, kwargs)
        refs: list[RefBase] = []
        for value in inputs.values():
            if type(value) not in ATOMIC_TYPES:
                collect_refs(value, refs)
        state, cell = run.add_node(spec, inputs, refs)
        return NodeHandle(run, state, cell)

    # -- outside a graph: plain Python ----------------------------------------------------
    def _plain_context(
        self, kwargs: dict[str, Any], given: Any
    ) -> tuple[dict[str, Any], NodeContext | None]:
        spec = self.spec
        if not spec.wants_context:
            return kwargs, None
        ctx = given
        if not isinstance(ctx, NodeContext):
            ctx = current_context() or NodeContext(
                run_id="local", graph_id=spec.name, node_id=spec.name
            )
        return {**kwargs, "context": ctx}, ctx

    def _call_plain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        spec = self.spec
        given = kwargs.get("context")  # bind() drops it; outside a graph the caller's one is used
        bound = spec.bind(args, kwargs)
        bound, ctx = self._plain_context(bound, given)
        if spec.is_async:
            return self._call_plain_async(bound, ctx)
        token = set_context(ctx) if ctx is not None else None
        try:
            return spec.normalize_outputs(spec.fn(**bound))
        finally:
            if token is not None:
                reset_context(token)

    async def _call_plain_async(
        self, bound: dict[str, Any], ctx: NodeContext | None
    ) -> dict[str, Any]:
        token = set_context(ctx) if ctx is not None else None
        try:
            return self.spec.normalize_outputs(await self.spec.fn(**bound))
        finally:
            if token is not None:
                reset_context(token)

    def __repr__(self) -> str:
        return f"<tool {self.spec.name}@{self.spec.version} outputs={self.outputs}>"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    outputs: list[str] | tuple[str, ...] | None = None,
    name: str | None = None,
    version: str = "0.1.0",
    retries: int = 0,
    retry_backoff: float = 0.5,
    retry_backoff_max: float = 60.0,
    retry_jitter: bool = True,
    timeout: float | None = None,
    queue: str | None = None,
    cache: bool = False,
    cache_ttl: float | None = 86400.0,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    outputs: list[str] | tuple[str, ...] | None = None,
    name: str | None = None,
    version: str = "0.1.0",
    retries: int = 0,
    retry_backoff: float = 0.5,
    retry_backoff_max: float = 60.0,
    retry_jitter: bool = True,
    timeout: float | None = None,
    queue: str | None = None,
    cache: bool = False,
    cache_ttl: float | None = 86400.0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a tool. Use bare (``@tool``) or with options (``@tool(outputs=["total"])``).

    ``retries`` / ``retry_backoff`` / ``retry_backoff_max`` / ``retry_jitter``: re-run a failed
    node up to ``retries`` more times, waiting ``retry_backoff * 2**(n-1)`` seconds (capped,
    jittered) before retry ``n``. ``timeout``: seconds one attempt may run. ``queue``: the worker
    queue that runs it (distributed executors). ``cache``: reuse the outputs of an earlier
    call with the same arguments, by this or another run, while the tool's name, version and
    source are unchanged; kept ``cache_ttl`` seconds (default a day; ``None``: no expiry) in
    the run's key-value backend — Redis on the Celery executor (docs/tools.md#caching).
    """
    policy = ToolPolicy(
        retries=retries,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        timeout=timeout,
        queue=queue,
        cache=cache,
        cache_ttl=cache_ttl,
    )

    def decorate(func: Callable[..., Any]) -> Tool:
        if isinstance(func, Tool):
            raise ConfigurationError(f"{func.name!r} is already a tool; apply @tool once")
        if not callable(func):
            raise ConfigurationError(f"@tool decorates functions, got {func!r}")
        tool_name = name if name is not None else getattr(func, "__name__", None)
        if not isinstance(tool_name, str) or not tool_name.isidentifier():
            raise ConfigurationError(
                f"tool name must be a Python identifier (it names nodes and tasks), got "
                f"{tool_name!r}"
            )
        if not isinstance(version, str) or not version:
            raise ConfigurationError(f"tool {tool_name!r}: version must be a non-empty string")
        spec = ToolSpec(
            func,
            name=tool_name,
            version=version,
            outputs=_check_outputs(tool_name, outputs),
            policy=policy,
        )
        wrapped = Tool(spec)
        current_registry().register(nspace="tool", name=tool_name, version=version, obj=wrapped)
        return wrapped

    if fn is not None:
        return decorate(fn)
    return decorate


def tool_spec_of(obj: Any) -> ToolSpec:
    """The ToolSpec of a Tool (used by executors and workers)."""
    if isinstance(obj, Tool):
        return obj.spec
    raise ConfigurationTypeError(f"{obj!r} is not a @tool; decorate the function with @tool")


__all__ = ["Tool", "tool", "tool_spec_of"]
