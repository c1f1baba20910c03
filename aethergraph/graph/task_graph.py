"""``TaskGraph``: the nodes and edges of one run, with each node's status and timings.

Tracing adds a :class:`TaskNode` per ``@tool`` call; the scheduler updates its status, attempts and
timings as it runs. After a run the graph is kept on ``GraphFunction.last_graph`` for inspection,
JSON dumps (``to_dict`` / ``from_dict`` round-trip) and pictures (``to_mermaid`` / ``to_dot``, and
``to_svg``, which is also what a notebook shows for a graph).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Iterator
from enum import StrEnum
from typing import Any

from aethergraph.errors import GraphSpecError
from aethergraph.graph.refs import RefSpec, decode_value, encode_value

FORMAT_VERSION = 1


class NodeStatus(StrEnum):
    """Life cycle of a node: pending → running → done | failed; or skipped / cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_STATUS_VALUES = tuple(status.value for status in NodeStatus)
_FINISHED = frozenset(
    {NodeStatus.DONE, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)


class TaskNode:
    """One node: which tool it runs with which inputs, and how that went."""

    __slots__ = (
        "attempts",
        "created_at",
        "deps",
        "error",
        "finished_at",
        "inputs",
        "node_id",
        "queue",
        "queued_at",
        "reused",
        "started_at",
        "status",
        "tool",
        "version",
    )

    def __init__(
        self,
        node_id: str,
        tool: str,
        version: str = "0.0.0",
        inputs: dict[str, Any] | None = None,
        deps: tuple[str, ...] = (),
        queue: str | None = None,
        created_at: float | None = None,
        *,
        status: NodeStatus = NodeStatus.PENDING,
        attempts: int = 0,
        started_at: float | None = None,
        finished_at: float | None = None,
        error: dict[str, Any] | None = None,
        queued_at: float | None = None,
        reused: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.tool = tool
        self.version = version
        self.inputs = inputs if inputs is not None else {}
        self.deps = deps
        self.queue = queue
        self.status = status
        self.attempts = attempts
        self.created_at = created_at
        self.queued_at = queued_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.error = error
        #: where a done node's outputs came from when it did not run: ``"cached"`` (an
        #: earlier run's outcome of the same call, ``@tool(cache=True)``); None: it ran
        self.reused = reused

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt ran, where it ran (a worker's clock on Celery), when known.

        Time spent waiting in a queue is not part of it: see :attr:`queue_wait`.
        """
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def phase(self) -> str:
        """The status as monitors show it: ``"queued"`` for a running node whose executor has
        not yet reported it begun (sent to a worker, waiting in a queue or a worker's
        prefetch; ``started_at`` is None), else the status's value."""
        status = self.status.value
        return "queued" if status == "running" and self.started_at is None else status

    @property
    def queue_wait(self) -> float | None:
        """Seconds the last attempt waited between dispatch and its start, when known."""
        if self.queued_at is None or self.started_at is None:
            return None
        return max(0.0, self.started_at - self.queued_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "tool": self.tool,
            "version": self.version,
            "queue": self.queue,
            "inputs": encode_value(self.inputs),
            "deps": list(self.deps),
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "reused": self.reused,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskNode:
        return cls(
            str(data["id"]),
            str(data["tool"]),
            version=str(data.get("version", "0.0.0")),
            inputs=decode_value(data.get("inputs", {})),
            deps=tuple(data.get("deps", ())),
            queue=data.get("queue"),
            status=NodeStatus(data.get("status", "pending")),
            attempts=int(data.get("attempts", 0)),
            created_at=data.get("created_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            error=data.get("error"),
            queued_at=data.get("queued_at"),
            reused=data.get("reused"),
        )

    def __repr__(self) -> str:
        return f"<TaskNode {self.node_id} tool={self.tool} {self.status.value}>"


class TaskGraph:
    """The traced graph of one run."""

    def __init__(
        self,
        graph_id: str,
        *,
        run_id: str = "",
        version: str = "0.1.0",
        inputs: dict[str, Any] | None = None,
        outputs: list[str] | None = None,
    ) -> None:
        self.graph_id = graph_id
        self.run_id = run_id
        self.version = version
        self.inputs = inputs if inputs is not None else {}
        self.outputs = outputs
        self.nodes: dict[str, TaskNode] = {}
        self.result_refs: Any = None  # what the body returned, with refs (encoded in to_dict)

    # -- building --------------------------------------------------------------------------
    def add_node(self, node: TaskNode) -> TaskNode:
        if node.node_id in self.nodes:
            raise GraphSpecError(f"graph {self.graph_id!r} already has a node {node.node_id!r}")
        for dep in node.deps:
            if dep not in self.nodes:
                raise GraphSpecError(
                    f"node {node.node_id!r} depends on {dep!r}, which is not in the graph"
                )
        self.nodes[node.node_id] = node
        return node

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[TaskNode]:
        return iter(list(self.nodes.values()))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __getitem__(self, node_id: str) -> TaskNode:
        return self.nodes[node_id]

    @property
    def edges(self) -> list[tuple[str, str]]:
        """``(upstream, downstream)`` pairs, in node order."""
        return [(dep, node.node_id) for node in self.nodes.values() for dep in node.deps]

    def dependents(self, node_id: str) -> list[str]:
        return [n.node_id for n in self.nodes.values() if node_id in n.deps]

    def status_counts(self) -> dict[str, int]:
        """Nodes by status, every status present (also at 0). Counted by the enum members, whose
        ``.value`` costs a property call each: read once per status, not once per node."""
        counts = dict.fromkeys(_STATUS_VALUES, 0)
        for status, n in Counter([node.status for node in list(self.nodes.values())]).items():
            counts[status.value] += n
        return counts

    def phase_counts(self) -> dict[str, int]:
        """Nodes by :attr:`TaskNode.phase`: :meth:`status_counts` with the running nodes that
        have not begun on a worker counted as ``"queued"``."""
        counts = self.status_counts()
        queued = sum(
            1
            for node in list(self.nodes.values())
            if node.status is NodeStatus.RUNNING and node.started_at is None
        )
        counts["running"] -= queued
        counts["queued"] = queued
        return counts

    def topological_order(self) -> list[str]:
        """Node ids, dependencies first (insertion order already is one; this re-derives it)."""
        order: list[str] = []
        seen: set[str] = set()
        for node_id in self.nodes:
            stack = [(node_id, False)]
            while stack:
                current, expanded = stack.pop()
                if current in seen:
                    continue
                if expanded:
                    seen.add(current)
                    order.append(current)
                    continue
                stack.append((current, True))
                stack.extend(
                    (d, False) for d in reversed(self.nodes[current].deps) if d not in seen
                )
        return order

    # -- serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "graph_id": self.graph_id,
            "run_id": self.run_id,
            "version": self.version,
            "inputs": encode_value(self.inputs),
            "outputs": self.outputs,
            "result": encode_value(self.result_refs),
            "nodes": [node.to_dict() for node in list(self.nodes.values())],
            "edges": [list(edge) for edge in self.edges],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskGraph:
        fmt = data.get("format", FORMAT_VERSION)
        if fmt != FORMAT_VERSION:
            raise GraphSpecError(
                f"unsupported TaskGraph format {fmt!r} (this version reads {FORMAT_VERSION})"
            )
        graph = cls(
            str(data["graph_id"]),
            run_id=str(data.get("run_id", "")),
            version=str(data.get("version", "0.1.0")),
            inputs=decode_value(data.get("inputs", {})),
            outputs=data.get("outputs"),
        )
        graph.result_refs = decode_value(data.get("result"))
        for node_data in data.get("nodes", []):
            graph.add_node(TaskNode.from_dict(node_data))
        return graph

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> TaskGraph:
        return cls.from_dict(json.loads(text))

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the graph, nodes coloured by status."""
        from aethergraph.graph.export import to_mermaid

        return to_mermaid(self)

    def to_dot(self) -> str:
        """A Graphviz DOT digraph of the graph, nodes coloured by status."""
        from aethergraph.graph.export import to_dot

        return to_dot(self)

    def to_svg(self, max_nodes: int = 60) -> str:
        """A self-contained SVG of the graph, nodes coloured by status, with tooltips.

        Unlike Mermaid or DOT it needs no renderer, so it also shows in a notebook saved to
        HTML and opened offline. Above ``max_nodes`` nodes it draws one box per tool.
        """
        from aethergraph.graph.picture import graph_svg

        return graph_svg(self, max_nodes=max_nodes)

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        from aethergraph.graph.picture import graph_html

        return graph_html(self)

    def _repr_mimebundle_(
        self, include: Container[str] | None = None, exclude: Container[str] | None = None
    ) -> dict[str, str]:
        """What Jupyter displays: the picture (HTML with a header, and SVG) and ``repr``."""
        from aethergraph.graph.picture import graph_mimebundle

        return graph_mimebundle(self, include=include, exclude=exclude)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.status_counts().items() if v)
        return f"<TaskGraph {self.graph_id} run={self.run_id} nodes={len(self)} {counts}>"


__all__ = ["NodeStatus", "RefSpec", "TaskGraph", "TaskNode"]
