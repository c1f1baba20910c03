"""AetherGraph: plain async Python turned into task graphs that run in-process or on workers.

Decorate functions with ``@tool`` and ``@graph_fn``; calling a graph traces its tool calls into a
``TaskGraph`` and runs the nodes as soon as their inputs are ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aethergraph.errors import (
    AetherGraphError,
    ConfigurationError,
    GraphInputError,
    NodeTimeoutError,
    OutputContractError,
    RegistryLookupError,
    RunCancelledError,
    RuntimeUsageError,
    ToolCallError,
    ToolError,
    UnknownOutputError,
    UnknownServiceError,
)
from aethergraph.execution.base import Executor
from aethergraph.execution.local import LocalExecutor
from aethergraph.graph.task_graph import NodeStatus, TaskGraph, TaskNode
from aethergraph.registry import Registry, current_registry
from aethergraph.runner import RunHandle, run, run_async, submit
from aethergraph.scheduling.events import NodeEvent, RunEvent, subscribe
from aethergraph.services.context import NodeContext, current_context
from aethergraph.services.lifecycle import start_server, stop_server
from aethergraph.services.runtime.base import BaseContextService, Service
from aethergraph.services.runtime.registry import (
    register_context_service,
    unregister_context_service,
)
from aethergraph.tracing.graph_fn import GraphFunction, graph_fn
from aethergraph.tracing.handles import NodeHandle, Ref
from aethergraph.tracing.tool import Tool, tool

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aethergraph.attached import AttachedRun


def attach(run_id: str, where: Any = None) -> AttachedRun:
    """Watch and await run ``run_id``, started by any client of the broker (``where``: its
    cluster or Celery executor; default: the configured broker). See
    :mod:`aethergraph.attached`; imported on first use, as it needs the Celery client."""
    from aethergraph.attached import attach as attach_run

    return attach_run(run_id, where)


__all__ = [
    "AetherGraphError",
    "BaseContextService",
    "ConfigurationError",
    "Executor",
    "GraphFunction",
    "GraphInputError",
    "LocalExecutor",
    "NodeContext",
    "NodeEvent",
    "NodeHandle",
    "NodeStatus",
    "NodeTimeoutError",
    "OutputContractError",
    "Ref",
    "Registry",
    "RegistryLookupError",
    "RunCancelledError",
    "RunEvent",
    "RunHandle",
    "RuntimeUsageError",
    "Service",
    "TaskGraph",
    "TaskNode",
    "Tool",
    "ToolCallError",
    "ToolError",
    "UnknownOutputError",
    "UnknownServiceError",
    "__version__",
    "attach",
    "current_context",
    "current_registry",
    "graph_fn",
    "register_context_service",
    "run",
    "run_async",
    "start_server",
    "stop_server",
    "submit",
    "subscribe",
    "tool",
    "unregister_context_service",
]
