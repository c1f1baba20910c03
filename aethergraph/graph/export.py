"""Pictures of a TaskGraph: Mermaid (renders in GitHub, Jupyter, docs) and Graphviz DOT."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aethergraph.graph.task_graph import TaskGraph

# status -> (fill, stroke)
STATUS_COLORS = {
    "pending": ("#eceff1", "#90a4ae"),
    "running": ("#fff59d", "#f9a825"),
    "queued": ("#fffde7", "#ffd54f"),  # sent, not yet begun on a worker (TaskNode.phase)
    "done": ("#c8e6c9", "#2e7d32"),
    "failed": ("#ffcdd2", "#c62828"),
    "skipped": ("#e0e0e0", "#757575"),
    "cancelled": ("#d7ccc8", "#5d4037"),
}


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(graph: TaskGraph) -> str:
    ids = {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    for node in graph:
        label = _mermaid_text(node.node_id)
        if node.tool != node.node_id:
            label += f"<br/><small>{_mermaid_text(node.tool)}</small>"
        lines.append(f'    {ids[node.node_id]}["{label}"]:::{node.phase}')
    for src, dst in graph.edges:
        lines.append(f"    {ids[src]} --> {ids[dst]}")
    for status, (fill, stroke) in STATUS_COLORS.items():
        lines.append(f"    classDef {status} fill:{fill},stroke:{stroke}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: TaskGraph) -> str:
    lines = [
        f"digraph {_dot_quote(graph.graph_id)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for node in graph:
        fill, stroke = STATUS_COLORS[node.phase]
        label = node.node_id if node.tool == node.node_id else f"{node.node_id}\n{node.tool}"
        lines.append(
            f"    {_dot_quote(node.node_id)} [label={_dot_quote(label)}, "
            f'fillcolor="{fill}", color="{stroke}", tooltip={_dot_quote(node.phase)}];'
        )
    for src, dst in graph.edges:
        lines.append(f"    {_dot_quote(src)} -> {_dot_quote(dst)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
