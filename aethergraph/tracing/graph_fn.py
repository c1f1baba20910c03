"""``@graph_fn`` and ``GraphFunction``: a named, versioned graph entry that is still a callable.

``await gf(**inputs)`` runs the body, tracing its ``@tool`` calls into a fresh TaskGraph, waits
for every node and returns the normalized outputs. Called inside another graph body, a graph
function runs inline as part of the enclosing run (its nodes join that graph).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aethergraph.errors import ConfigurationError, GraphInputError
from aethergraph.graph.task_graph import TaskGraph
from aethergraph.registry import current_registry
from aethergraph.services.context import NodeContext
from aethergraph.tracing.active import active_run
from aethergraph.tracing.execute import execute_graph, execute_inline


class GraphFunction:
    """A graph function; public surface: graph_id, name, inputs, outputs, version, last_graph."""

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        inputs: list[str] | None = None,
        outputs: list[str] | None = None,
        version: str = "0.1.0",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"graph_fn name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise ConfigurationError(f"graph_fn {name!r}: fn must be callable, got {fn!r}")
        for label, names in (("inputs", inputs), ("outputs", outputs)):
            if names is not None and (
                isinstance(names, str) or not all(isinstance(n, str) and n for n in names)
            ):
                raise ConfigurationError(
                    f"graph_fn {name!r}: {label} must be a list of names, e.g. {label}=['x'], "
                    f"got {names!r}"
                )
        self.graph_id = name
        self.name = name
        self.fn = fn
        self.inputs = list(inputs or [])
        self.outputs = list(outputs or [])
        self.version = version
        self.registry_key: str | None = None
        #: the TaskGraph of the latest run (live while it runs): structure, statuses, timings
        self.last_graph: TaskGraph | None = None
        self.last_context: NodeContext | None = None
        #: the memory events of the latest finished run
        self.last_memory_snapshot: Any = None
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._analyze_signature()

    def _analyze_signature(self) -> None:
        sig = inspect.signature(self.fn)
        self._wants_context = "context" in sig.parameters
        self._params = [p for p in sig.parameters.values() if p.name != "context"]
        self._var_kw = any(p.kind is p.VAR_KEYWORD for p in self._params)
        self._positional = [
            p.name for p in self._params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._names = {
            p.name for p in self._params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        self._required = {
            p.name
            for p in self._params
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        undeclared = [n for n in self.inputs if n not in self._names and not self._var_kw]
        if undeclared:
            raise ConfigurationError(
                f"graph_fn {self.name!r} declares inputs {undeclared} that its function does not "
                f"accept; add them as parameters (or a **kwargs parameter)"
            )

    def bind_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate a call's inputs and return them by name (``context`` excluded)."""
        if len(args) > len(self._positional):
            raise GraphInputError(
                f"graph {self.name!r} takes {len(self._positional)} positional inputs but "
                f"{len(args)} were given; pass inputs by name, e.g. run(gf, x=1)"
            )
        bound = dict(zip(self._positional, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise GraphInputError(f"graph {self.name!r} got multiple values for input {key!r}")
            bound[key] = value
        bound.pop("context", None)
        allowed = self._names | set(self.inputs)
        unknown = sorted(k for k in bound if k not in allowed)
        if unknown and not self._var_kw:
            raise GraphInputError(
                f"graph {self.name!r} got unknown input(s) {unknown}; its inputs are "
                f"{sorted(allowed)}"
            )
        missing = sorted(self._required - bound.keys())
        if missing:
            raise GraphInputError(f"graph {self.name!r} is missing required input(s) {missing}")
        return bound

    @property
    def wants_context(self) -> bool:
        return self._wants_context

    def remember(self, graph: TaskGraph, context: NodeContext, snapshot: Any) -> None:
        """Record a run for inspection (``last_graph`` / ``last_context`` /
        ``last_memory_snapshot``), all three from the same run."""
        self.last_graph = graph
        self.last_context = context
        self.last_memory_snapshot = snapshot

    async def __call__(self, *args: Any, **inputs: Any) -> dict[str, Any]:
        """Run the graph (or, inside another graph body, run inline) and return its outputs."""
        bound = self.bind_inputs(args, inputs)
        run = active_run.get()
        if run is not None:
            return await execute_inline(self, bound, run)
        return await execute_graph(self, bound)

    def __repr__(self) -> str:
        return (
            f"<GraphFunction {self.name}@{self.version} inputs={self.inputs} "
            f"outputs={self.outputs}>"
        )


def graph_fn(
    name: str,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    version: str = "0.1.0",
    agent: str | None = None,
) -> Callable[[Callable[..., Any]], GraphFunction]:
    """Turn a function into a :class:`GraphFunction` registered under ``graphfn`` (+ ``agent``)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            "graph_fn needs a name: use @graph_fn(name='my_graph'), not a bare @graph_fn"
            if callable(name)
            else f"graph_fn name must be a non-empty string, got {name!r}"
        )
    if agent is not None and (not isinstance(agent, str) or not agent):
        raise ConfigurationError(f"graph_fn {name!r}: agent must be a non-empty string or None")

    def decorate(fn: Callable[..., Any]) -> GraphFunction:
        gf = GraphFunction(name, fn, inputs, outputs, version)
        registry = current_registry()
        registry.register(nspace="graphfn", name=name, version=version, obj=gf)
        gf.registry_key = f"graphfn:{name}@{version}"
        if agent is not None:
            registry.register(nspace="agent", name=agent, version=version, obj=gf)
        return gf

    return decorate


__all__ = ["GraphFunction", "graph_fn"]
