"""``NodeContext``: what a graph body or a tool sees of the runtime.

A context carries the ids of where the code runs (``run_id``, ``graph_id``, ``node_id``) and
gives access to services: the built-ins as methods (``logger()``, ``channel()``, ``memory()``,
``artifacts()``, ``kv()``) and custom services as ``context.<name>()``. Services are looked up at
call time, so registering a replacement takes effect for contexts that already exist.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from aethergraph.errors import NoActiveContextError, ServiceUsageError
from aethergraph.services.builtins.artifacts import ArtifactStore
from aethergraph.services.builtins.channel import Channel
from aethergraph.services.builtins.kv import KVStore
from aethergraph.services.builtins.memory import Memory
from aethergraph.services.node_logger import node_logger
from aethergraph.services.runtime.registry import (
    BuiltinBackends,
    ServiceRegistry,
    current_services,
)

_current: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar(
    "aethergraph_node_context", default=None
)


class ServiceAccessor:
    """What ``context.<name>`` is: call it bare for the instance, with arguments to call it.

    ``context.trainer()`` returns the registered instance; ``await context.predictor("hi")``
    calls the instance (its ``__call__``), which is the tutorial's "callable services" sugar.
    """

    __slots__ = ("_instance", "_name")

    def __init__(self, name: str, instance: Any) -> None:
        self._name = name
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            return self._instance
        if not callable(self._instance):
            raise ServiceUsageError(
                f"service {self._name!r} ({type(self._instance).__name__}) is not callable; "
                f"use context.{self._name}() to get it and call one of its methods"
            )
        return self._instance(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<service accessor {self._name!r} -> {self._instance!r}>"


class NodeContext:
    """The runtime context injected as ``context`` into graph bodies and tools."""

    __slots__ = ("_builtins", "attempt", "graph_id", "node_id", "run_id", "services")

    def __init__(
        self,
        *,
        run_id: str,
        graph_id: str,
        node_id: str,
        attempt: int = 1,
        services: ServiceRegistry | None = None,
        builtins: BuiltinBackends | None = None,
    ) -> None:
        self.run_id = run_id
        self.graph_id = graph_id
        self.node_id = node_id
        self.attempt = attempt
        self.services = services or current_services()
        # A run on a distributed executor shares memory/kv/artifacts with its workers: its
        # context carries the executor's backends instead of the process's own (which no
        # executor ever replaces).
        self._builtins = builtins

    @property
    def _backends(self) -> BuiltinBackends:
        """The built-in backends this context's services use (private: every public name of a
        context is reserved against custom services)."""
        return self._builtins if self._builtins is not None else self.services.builtins

    # -- built-in services --------------------------------------------------------------
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A stdlib logger whose records carry ``run_id``, ``graph_id`` and ``node_id``."""
        return node_logger(self.run_id, self.graph_id, self.node_id)

    def channel(self) -> Channel:
        """Messages to the user (console by default): ``await channel().send_text(...)``."""
        return Channel(
            self._backends.channel,
            run_id=self.run_id,
            graph_id=self.graph_id,
            node_id=self.node_id,
        )

    def memory(self) -> Memory:
        """The run-scoped event log shared by every node of this run."""
        return Memory(
            self._backends.memory,
            run_id=self.run_id,
            graph_id=self.graph_id,
            node_id=self.node_id,
        )

    def artifacts(self) -> ArtifactStore:
        """The content-addressed artifact store."""
        return self._backends.artifacts

    def kv(self) -> KVStore:
        """A small key/value store with TTLs."""
        return self._backends.kv

    # -- custom services ----------------------------------------------------------------
    def __getattr__(self, name: str) -> ServiceAccessor:
        if name.startswith("_"):
            raise AttributeError(name)
        return ServiceAccessor(name, self.services.get(name))

    def __repr__(self) -> str:
        return (
            f"NodeContext(run_id={self.run_id!r}, graph_id={self.graph_id!r}, "
            f"node_id={self.node_id!r})"
        )


def current_context() -> NodeContext | None:
    """The NodeContext of the code running now, or ``None`` outside any node or graph body."""
    return _current.get()


def require_context() -> NodeContext:
    ctx = _current.get()
    if ctx is None:
        raise NoActiveContextError(
            "no NodeContext is active: ctx() works only while a graph body or a tool is running "
            "(it gives the context of the node that called the service)"
        )
    return ctx


def set_context(ctx: NodeContext | None) -> contextvars.Token[NodeContext | None]:
    """Make ``ctx`` current in this (task's) context; returns a token for ``reset_context``."""
    return _current.set(ctx)


def reset_context(token: contextvars.Token[NodeContext | None]) -> None:
    _current.reset(token)
