"""A TaskGraph drawn as a self-contained SVG (and an HTML fragment around it) for Jupyter.

Why a drawing of our own: Mermaid and DOT (``export.py``) need a renderer, a CDN script or
Graphviz, so a notebook saved to HTML and opened with no network shows source text, not a
picture. Here the layout is computed in pure Python and written as plain SVG with no scripts,
fonts, stylesheets or links. Colours and fonts are presentation attributes, not a ``<style>``
element, because CSS inside an inline SVG applies to the whole notebook page.

The layout is layered, left to right: longest-path layers from the dependencies, barycenter
sweeps to reduce crossings, and invisible waypoints ("dummies") so that an edge spanning several
layers runs between boxes instead of through them. Left to right because sweeps of hundreds of
parallel nodes are common: they stack into one tall column, and notebooks scroll vertically.

A graph of more than ``max_nodes`` nodes is summarized: one box per tool with its node count and
a stacked status bar. Tools, unlike nodes, can form cycles (A → B → A through different nodes),
so the layout breaks cycles before layering and draws the edges that close one dashed, pointing
back. Node ids, tool names and error messages are user data: every text goes through ``_esc``.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import html
import itertools
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aethergraph.graph.export import STATUS_COLORS

if TYPE_CHECKING:
    from aethergraph.graph.task_graph import TaskGraph, TaskNode

#: the order statuses are counted, stacked and listed in (``queued``: sent, not yet begun on a
#: worker — :attr:`TaskNode.phase`)
STATUS_ORDER = ("done", "running", "queued", "failed", "pending", "skipped", "cancelled")
#: a tool's summary box is outlined in the colour of the first of these its nodes have
_SEVERITY = ("failed", "running", "queued", "pending", "cancelled", "skipped", "done")

# Fonts every system has some version of: nothing is fetched. Monospace keeps the widths of ids
# predictable (about 0.6 em a character), and those widths size the boxes.
_MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono','Liberation Mono',monospace"
_SANS = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_TEXT, _MUTED, _EDGE = "#212121", "#616161", "#9e9e9e"
_DASH = ' stroke-dasharray="5 3"'

_PAD = 16  # margin around the drawing
_TOP = _PAD + 30  # below the legend
_COL_GAP = 72  # between layers: room for the edges' curves
_LABEL_MAX = 36  # characters of an id or tool name drawn in a box (the tooltip has all of it)
_ERROR_MAX = 600  # characters of an error message in a tooltip
_DENSE = 16  # a layer of more nodes than this gets one-line boxes: tall columns are the problem
_MARK = "\x00P"  # placeholder for the marker-id prefix (_esc removes NUL from every other text)

# XML 1.0 forbids these even escaped (tracebacks carry ANSI escapes): they are replaced.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Adjacency = Mapping[str, list[str]]


def _esc(text: object) -> str:
    """Text made safe for SVG/HTML text and attribute values."""
    return html.escape(_NOT_XML.sub("\ufffd", str(text)), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _width(text: str, size: float, *, mono: bool = True) -> float:
    """An estimate of drawn width that errs wide: real metrics are the browser's business."""
    return len(text) * size * (0.62 if mono else 0.58)


def _num(*values: float) -> str:
    """Coordinates as short text: ``_num(x)``, or ``_num(x, y)`` for a point of a path."""
    return ",".join(f"{value:.1f}".rstrip("0").rstrip(".") for value in values)


def _rect(x: float, y: float, w: float, h: float, extra: str) -> str:
    return f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" {extra}/>'


def _text(x: float, y: float, size: int, body: str, fill: str = _TEXT, extra: str = "") -> str:
    """A text element around ``body``: escaped text, or tspans of escaped text."""
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}"{extra}>{body}</text>'
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {secs} s"


def _colors(status: str) -> tuple[str, str]:
    """``(fill, stroke)`` of a status, from ``export.STATUS_COLORS`` (one palette for all)."""
    return STATUS_COLORS.get(status, STATUS_COLORS["pending"])


def _reused(node: TaskNode) -> str | None:
    """``"cached"`` / ``"resumed"`` when the node's outcome was reused rather than computed."""
    value = getattr(node, "reused", None)
    return value if isinstance(value, str) and value else None


def _counts(nodes: Iterable[TaskNode]) -> tuple[dict[str, int], dict[str, int]]:
    """Nodes by status (in :data:`STATUS_ORDER`) and reused nodes by kind."""
    nodes = list(nodes)
    counts = dict.fromkeys(STATUS_ORDER, 0) | Counter(node.phase for node in nodes)
    return counts, dict(Counter(kind for kind in map(_reused, nodes) if kind))


def _counts_text(counts: Mapping[str, int], reused: Mapping[str, int]) -> str:
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return " · ".join(parts + [f"{n} {kind}" for kind, n in reused.items()])


def _error_text(error: Mapping[str, object] | None) -> str:
    if not error:
        return ""
    message, exc_type = str(error.get("message", "")), error.get("exc_type")
    return _clip(f"{exc_type}: {message}" if exc_type else message, _ERROR_MAX)


# -- layout -----------------------------------------------------------------------------------


@dataclass
class _Box:
    width: float
    height: float
    x: float = 0.0
    y: float = 0.0
    dummy: bool = False  # a waypoint of an edge that spans layers, not a drawn box

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass
class _Chain:
    """One edge as laid out: from ``path[0]`` in a layer to ``path[-1]`` in a later one."""

    path: list[str]  # the upstream box, waypoints, the downstream box
    reversed: bool  # the edge closes a cycle: it is drawn from path[-1] back to path[0]


@dataclass
class _Layout:
    boxes: dict[str, _Box] = field(default_factory=dict)
    chains: list[_Chain] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)  # boxes with an edge to themselves
    width: float = 2.0 * _PAD
    height: float = _TOP + _PAD


def _break_cycles(keys: Sequence[str], succs: Adjacency) -> tuple[list[str], set[tuple[str, str]]]:
    """A topological order of the graph without its back edges, and those edges (iterative DFS).

    Node graphs have none; a summary by tool may, and layering must not loop on them.
    """
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: finished
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    for root in keys:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succs[root]))]
        while stack:
            key, rest = stack[-1]
            for nxt in rest:
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(succs[nxt])))
                    break
                if state[nxt] == 1:
                    back.add((key, nxt))
            else:
                state[key] = 2
                post.append(key)
                stack.pop()
    return post[::-1], back


def _crossings(upper: list[str], lower: list[str], down: Adjacency) -> int:
    pos = {key: i for i, key in enumerate(lower)}
    seen: list[int] = []
    count = 0
    for _, j in sorted((i, pos[w]) for i, v in enumerate(upper) for w in down[v]):
        count += len(seen) - bisect.bisect_right(seen, j)
        bisect.insort(seen, j)
    return count


def _order(rows: list[list[str]], up: Adjacency, down: Adjacency) -> None:
    """Reorder each layer by the mean position of its neighbours in the previous one (sweeping
    down, then up, twice), keeping the order with the fewest crossings."""

    def total() -> int:
        return sum(_crossings(rows[r], rows[r + 1], down) for r in range(len(rows) - 1))

    def center(i: int, nbrs: list[str], pos: Mapping[str, int]) -> float:
        return sum(pos[n] for n in nbrs) / len(nbrs) if nbrs else float(i)

    best, best_rows = total(), [list(row) for row in rows]
    for sweep in range(4):
        if best == 0:
            break
        step, nbrs = (-1, up) if sweep % 2 == 0 else (1, down)
        for r in range(1, len(rows)) if step < 0 else range(len(rows) - 2, -1, -1):
            pos = {key: i for i, key in enumerate(rows[r + step])}
            keyed = [(center(i, nbrs[k], pos), i, k) for i, k in enumerate(rows[r])]
            rows[r] = [key for *_, key in sorted(keyed)]
        crossings = total()
        if crossings < best:
            best, best_rows = crossings, [list(row) for row in rows]
    rows[:] = best_rows


def _place(row: list[str], boxes: Mapping[str, _Box], desired: list[float], gap: float) -> None:
    """Put a layer's boxes as near their desired tops as their order and gaps allow: the mean
    of packing downwards and packing upwards (both keep the gaps, so their mean does too)."""
    heights = [boxes[key].height for key in row]
    # space after box i: half the gap next to an edge's waypoint
    space = [
        h + (gap / 2 if boxes[a].dummy or boxes[b].dummy else gap)
        for h, a, b in zip(heights, row, row[1:], strict=False)
    ]
    down, up = list(desired), list(desired)
    for i in range(1, len(row)):
        down[i] = max(desired[i], down[i - 1] + space[i - 1])
    for i in range(len(row) - 2, -1, -1):
        up[i] = min(desired[i], up[i + 1] - space[i])
    for i, key in enumerate(row):
        boxes[key].y = (down[i] + up[i]) / 2


def _layout(
    keys: Sequence[str],
    edges: Iterable[tuple[str, str]],
    size: Callable[[str, bool], tuple[float, float]],
) -> _Layout:
    """Positions of boxes, sized ``size(key, dense)`` where ``dense``: a layer holds more than
    ``_DENSE`` of them (tall columns are the problem), and the paths of the edges between them."""
    succs: dict[str, list[str]] = {key: [] for key in keys}
    out = _Layout()
    for src, dst in dict.fromkeys(edges):
        if src == dst:
            out.loops.append(src)
        else:
            succs[src].append(dst)
    topo, back = _break_cycles(keys, succs)
    out.chains = [
        _Chain([d, s], True) if (s, d) in back else _Chain([s, d], False)
        for s in keys
        for d in succs[s]
    ]
    preds: dict[str, list[str]] = {key: [] for key in keys}
    nexts: dict[str, list[str]] = {key: [] for key in keys}
    for a, b in (chain.path for chain in out.chains):  # along the layers: back edges reversed
        preds[b].append(a)
        nexts[a].append(b)
    layer: dict[str, int] = {}
    for key in topo:  # longest path
        layer[key] = max((layer[p] + 1 for p in preds[key]), default=0)
    for key in reversed(topo):  # a source used only late (a config node) moves next to its users
        if not preds[key] and nexts[key]:
            layer[key] = min(layer[n] for n in nexts[key]) - 1
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for key in keys:
        rows[layer[key]].append(key)
    dense = max(map(len, rows), default=0) > _DENSE
    gap = 6.0 if dense else 14.0
    boxes = out.boxes
    boxes.update((key, _Box(*size(key, dense))) for key in keys)
    up: dict[str, list[str]] = {key: [] for key in boxes}
    down: dict[str, list[str]] = {key: [] for key in boxes}
    for chain in out.chains:
        a, b = chain.path
        for lay in range(layer[a] + 1, layer[b]):
            dummy = f"\x00{len(boxes)}"
            while dummy in boxes:  # a node id could be anything
                dummy += "'"
            boxes[dummy] = _Box(0.0, 0.0, dummy=True)
            rows[lay].append(dummy)
            up[dummy], down[dummy] = [], []
            chain.path.insert(-1, dummy)
        for u, v in itertools.pairwise(chain.path):
            down[u].append(v)
            up[v].append(u)
    _order(rows, up, down)

    x = float(_PAD)
    for row in rows:
        col_width = max(boxes[key].width for key in row)
        for box in (boxes[key] for key in row):
            if box.dummy:
                box.x, box.width = x, col_width  # the edge runs straight through the column
            else:
                box.x = x + (col_width - box.width) / 2
        x += col_width + _COL_GAP
        _place(row, boxes, [0.0] * len(row), gap)
    for sweep in range(8):  # pull each box towards its neighbours, alternating directions
        for row in rows if sweep % 2 == 0 else rows[::-1]:
            desired = []
            for key in row:
                # waypoints weigh less: a real neighbour should not be dragged along a detour
                ws = [(0.3 if boxes[n].dummy else 1.0, boxes[n].cy) for n in up[key] + down[key]]
                mean = sum(w * c for w, c in ws) / sum(w for w, _ in ws) if ws else boxes[key].cy
                desired.append(mean - boxes[key].height / 2)
            _place(row, boxes, desired, gap)
    if boxes:
        shift = _TOP - min(box.y for box in boxes.values())
        for box in boxes.values():
            box.y += shift
        out.width = x - _COL_GAP + _PAD
        out.height = max(box.y + box.height for box in boxes.values()) + _PAD
    return out


# -- drawing ----------------------------------------------------------------------------------


def _chain_d(chain: _Chain, boxes: Mapping[str, _Box]) -> str:
    """Path data of an edge: curves between layers, straight through each waypoint's column."""
    first, last = boxes[chain.path[0]], boxes[chain.path[-1]]
    shift = 6 if chain.reversed else 0  # beside the edge it makes a cycle with, if any
    points = [(first.x + first.width, first.cy + shift)]
    for dummy in (boxes[key] for key in chain.path[1:-1]):
        points += [(dummy.x, dummy.cy), (dummy.x + dummy.width, dummy.cy)]
    points.append((last.x, last.cy + shift))
    curved = [i % 2 == 0 for i in range(len(points) - 1)]  # C, L, C, L, …, C
    if chain.reversed:
        points.reverse()
    parts = [f"M{_num(*points[0])}"]
    for ((ax, ay), (bx, by)), curve in zip(itertools.pairwise(points), curved, strict=True):
        dx = (bx - ax) / 2
        parts.append(
            f"C{_num(ax + dx, ay)} {_num(bx - dx, by)} {_num(bx, by)}"
            if curve
            else f"L{_num(bx, by)}"
        )
    return " ".join(parts)


def _edges_svg(
    layout: _Layout, colors: Mapping[str, str], titles: Mapping[tuple[str, str], str]
) -> tuple[list[str], dict[str, str]]:
    """Edge paths, coloured ``colors[src]`` (else grey), and the arrowhead marker per colour."""
    out: list[str] = []
    markers: dict[str, str] = {}

    def path(d: str, src: str, dst: str, dashed: bool) -> None:
        color = colors.get(src, _EDGE)
        marker = markers.setdefault(color, f"{_MARK}-a{len(markers)}")
        out.append(
            f'<path class="ag-edge" d="{d}" fill="none" stroke="{color}" stroke-width="1.3"'
            f'{_DASH if dashed else ""} marker-end="url(#{marker})">'
            f"<title>{_esc(titles.get((src, dst), ''))}</title></path>"
        )

    for chain in layout.chains:
        ends = chain.path[0], chain.path[-1]
        src, dst = ends[::-1] if chain.reversed else ends
        path(_chain_d(chain, layout.boxes), src, dst, chain.reversed)
    for key in layout.loops:
        box = layout.boxes[key]
        x1, x2, y = box.x + box.width - 44, box.x + box.width - 14, box.y  # over the top edge
        d = f"M{_num(x1, y)} C{_num(x1, y - 16)} {_num(x2, y - 16)} {_num(x2, y)}"
        path(d, key, key, False)
    return out, markers


def _node_lines(node: TaskNode) -> tuple[str, str]:
    """The id, and the tool (when the id is not just it) with the duration when known — or
    where its outputs came from when it did not run (``cached``, ``resumed``)."""
    sub = node.tool if node.tool != node.node_id else ""
    reused = getattr(node, "reused", None)
    when = reused if reused else _seconds(node.duration) if node.duration is not None else ""
    if when:
        sub = f"{sub} · {when}" if sub else when
    return _clip(node.node_id, _LABEL_MAX), _clip(sub, _LABEL_MAX + 10)


def _node_size(node: TaskNode, dense: bool) -> tuple[float, float]:
    label, sub = _node_lines(node)
    if dense:  # one line: "id  tool · 3 ms"
        return max(_width(label, 12) + _width(sub, 11) + 28, 64.0), 24.0
    return max(_width(label, 12), _width(sub, 11)) + 20, 40.0 if sub else 26.0


def _node_tooltip(node: TaskNode) -> str:
    lines = [node.node_id, f"tool: {node.tool}", f"status: {node.phase}"]
    kind = _reused(node)
    lines += [f"reused: {kind}"] if kind else []
    lines.append(f"attempts: {node.attempts}")
    lines += [f"duration: {_seconds(node.duration)}"] if node.duration is not None else []
    lines += [f"queue: {node.queue}"] if node.queue else []
    error = _error_text(node.error)
    lines += [f"{'error' if node.status.value == 'failed' else 'reason'}: {error}"] if error else []
    return "\n".join(lines)


def _node_svg(node: TaskNode, box: _Box) -> str:
    status = node.phase
    fill, stroke = _colors(status)
    label, sub = map(_esc, _node_lines(node))
    x, y, mono = box.x, box.y, f' font-family="{_MONO}"'
    dash = _DASH if _reused(node) else ""
    parts = [
        f'<g class="ag-node ag-{_esc(status)}"><title>{_esc(_node_tooltip(node))}</title>',
        _rect(x, y, box.width, box.height, f'rx="5" fill="{fill}" stroke="{stroke}"{dash}'),
    ]
    if box.height < 26:  # dense: the tool follows the id on the same line, muted
        tspan = f'<tspan dx="10" fill="{_MUTED}" font-size="11">{sub}</tspan>' if sub else ""
        parts.append(_text(x + 10, y + 16, 12, label + tspan, extra=mono))
    else:
        parts.append(_text(x + 10, y + 17, 12, label, extra=mono))
        if sub:
            parts.append(_text(x + 10, y + 32, 11, sub, fill=_MUTED, extra=mono))
    return "".join(parts) + "</g>"


def _tool_size(tool: str, nodes: Sequence[TaskNode]) -> tuple[float, float]:
    head = _width(_clip(tool, _LABEL_MAX), 13) * 1.05 + _width(_plural(len(nodes), "node"), 11) + 10
    return max(head, _width(_counts_text(*_counts(nodes)), 11, mono=False), 150.0) + 20, 66.0


def _tool_tooltip(tool: str, nodes: Sequence[TaskNode]) -> str:
    counts, reused = _counts(nodes)
    lines = [f"tool: {tool}", f"{_plural(len(nodes), 'node')}: {_counts_text(counts, {})}"]
    lines += [f"{kind}: {n}" for kind, n in reused.items()]
    durations = [n.duration for n in nodes if n.duration is not None]
    if durations:
        total = sum(durations)
        lines.append(f"time: {_seconds(total)} total, {_seconds(total / len(durations))} mean")
    failed = [n for n in nodes if n.status.value == "failed"]
    lines += [f"failed {n.node_id}: {_error_text(n.error)}" for n in failed[:3]]
    lines += [f"… and {len(failed) - 3} more failed"] if len(failed) > 3 else []
    return "\n".join(lines)


def _tool_svg(tool: str, nodes: Sequence[TaskNode], box: _Box) -> str:
    """A tool's summary: name, node count, a stacked status bar and the counts in words."""
    counts, reused = _counts(nodes)
    worst = next((s for s in _SEVERITY if counts.get(s)), "pending")
    dash = _DASH if sum(reused.values()) == len(nodes) else ""  # dashed when all were reused
    x, y, w = box.x, box.y, box.width
    name, count = _esc(_clip(tool, _LABEL_MAX)), _plural(len(nodes), "node")
    outline = f'rx="6" fill="#ffffff" stroke="{_colors(worst)[1]}" stroke-width="2"{dash}'
    return "".join(
        [
            f'<g class="ag-tool ag-{worst}"><title>{_esc(_tool_tooltip(tool, nodes))}</title>',
            _rect(x, y, w, box.height, outline),
            _text(x + 10, y + 19, 13, name, extra=f' font-family="{_MONO}" font-weight="600"'),
            _text(x + w - 10, y + 19, 11, count, fill=_MUTED, extra=' text-anchor="end"'),
            *_bar(x + 10, y + 28, w - 20, counts),
            _text(x + 10, y + 55, 11, _esc(_counts_text(counts, reused)), fill=_MUTED),
            "</g>",
        ]
    )


def _bar(x: float, y: float, width: float, counts: Mapping[str, int]) -> list[str]:
    """A stacked bar of status proportions; any status present gets at least 2 px, so that one
    failure among hundreds of nodes still shows."""
    widths = {s: max(2.0, width * n / sum(counts.values())) for s, n in counts.items() if n}
    if widths:
        widest = max(widths, key=lambda s: widths[s])
        widths[widest] -= sum(widths.values()) - width
    parts = [_rect(x, y, width, 10, 'fill="#f5f5f5"')]
    for status, seg in widths.items():
        segment = _rect(x, y, seg, 10, f'class="ag-bar ag-{status}" fill="{_colors(status)[1]}"')
        parts.append(segment.replace("/>", f"><title>{counts[status]} {status}</title></rect>"))
        x += seg
    return parts


def _legend(counts: Mapping[str, int], reused: Mapping[str, int], note: str) -> tuple[str, float]:
    """The row above the graph: status swatches with counts, reused kinds (dashed), a note."""
    parts: list[str] = []
    x, y = float(_PAD), float(_PAD)
    items = [(status, n, *_colors(status), "") for status, n in counts.items() if n]
    items += [(kind, n, "#ffffff", _MUTED, _DASH) for kind, n in reused.items()]
    for label, n, fill, stroke, dash in items:
        text = _esc(f"{label} {n}")
        swatch = f'rx="2" fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}'
        parts.append(
            f'<g class="ag-legend"><title>{text}</title>{_rect(x, y, 12, 12, swatch)}'
            f"{_text(x + 17, y + 10.5, 12, text)}</g>"
        )
        x += 17 + _width(f"{label} {n}", 12, mono=False) + 12
    if note:
        parts.append(_text(x + 4, y + 10.5, 12, _esc(note), fill=_MUTED))
        x += 4 + _width(note, 12, mono=False)
    return "".join(parts), x + _PAD


def graph_svg(graph: TaskGraph, *, max_nodes: int = 60) -> str:
    """The graph as a self-contained SVG: boxes coloured by status with tooltips, a legend, and
    one box per tool (with a status bar) once the graph has more than ``max_nodes`` nodes."""
    nodes = list(graph.nodes.values())  # a live run's graph may grow: draw one snapshot
    known = {node.node_id: node for node in nodes}
    counts, reused = _counts(nodes)
    colors: dict[str, str] = {}
    if len(nodes) > max_nodes:
        tools: dict[str, list[TaskNode]] = {}
        for node in nodes:
            tools.setdefault(node.tool, []).append(node)
        pairs: dict[tuple[str, str], int] = {}
        for node in nodes:
            for pair in ((known[d].tool, node.tool) for d in node.deps if d in known):
                pairs[pair] = pairs.get(pair, 0) + 1
        titles = {(a, b): f"{a} → {b}: {_plural(n, 'edge')}" for (a, b), n in pairs.items()}
        layout = _layout(list(tools), pairs, lambda tool, _: _tool_size(tool, tools[tool]))
        drawn = [_tool_svg(tool, members, layout.boxes[tool]) for tool, members in tools.items()]
        note = f"{len(nodes)} nodes, {_plural(len(tools), 'tool')} (over max_nodes={max_nodes})"
    else:
        edges = [(dep, node.node_id) for node in nodes for dep in node.deps if dep in known]
        layout = _layout(list(known), edges, lambda key, dense: _node_size(known[key], dense))
        drawn = [_node_svg(node, layout.boxes[node.node_id]) for node in nodes]
        red = _colors("failed")[1]
        colors = {key: red for key, n in known.items() if n.status.value == "failed"}
        titles = {(a, b): f"{a} → {b}" for a, b in edges}
        note = "" if nodes else "empty graph"
    edges_svg, markers = _edges_svg(layout, colors, titles)
    legend, legend_width = _legend(counts, reused, note)
    width, height = _num(max(layout.width, legend_width)), _num(layout.height)
    defs = "".join(
        f'<marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"'
        f' markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        for color, marker in markers.items()
    )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="{_SANS}" role="img"'
        f' aria-label="TaskGraph {_esc(graph.graph_id)}">\n'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>'  # for dark notebook themes
        f"<defs>{defs}</defs>"
    )
    svg = "\n".join([head, legend, *edges_svg, *drawn, "</svg>"])
    # Ids are global to the notebook page: name markers after the drawing itself, so that two
    # pictures share an id only when they draw the same thing.
    digest = hashlib.sha1(svg.encode(), usedforsecurity=False).hexdigest()
    return svg.replace(_MARK, f"ag{digest[:10]}")


def _html(graph: TaskGraph, svg: str) -> str:
    counts, reused = _counts(list(graph.nodes.values()))
    total = sum(counts.values())
    run = f' · run <span title="{_esc(graph.run_id)}">{_esc(graph.run_id[:8])}</span>'
    header = (
        f"<b>{_esc(graph.graph_id)}</b>{run if graph.run_id else ''} · {_plural(total, 'node')}"
        + (f": {_esc(_counts_text(counts, reused))}" if total else "")
    )
    return (
        '<div class="aethergraph-picture" style="max-width:100%; overflow:auto">'
        f'<div style="font-family:{_SANS}; font-size:13px; margin:0 0 4px 0;'
        f' white-space:nowrap">{header}</div>{svg}</div>'
    )


def graph_html(graph: TaskGraph, *, max_nodes: int = 60) -> str:
    """An HTML fragment (no script): a one-line header with the graph id, the run id (short)
    and counts by status, then :func:`graph_svg`, in a div that scrolls when it is too wide."""
    return _html(graph, graph_svg(graph, max_nodes=max_nodes))


def graph_mimebundle(
    graph: TaskGraph, include: Container[str] | None = None, exclude: Container[str] | None = None
) -> dict[str, str]:
    """Jupyter's representations of the graph, only those asked for; the SVG is drawn once."""
    svg = functools.cache(lambda: graph_svg(graph))
    makers: dict[str, Callable[[], str]] = {
        "image/svg+xml": svg,
        "text/html": lambda: _html(graph, svg()),
        "text/plain": lambda: repr(graph),
    }
    return {
        kind: make()
        for kind, make in makers.items()
        if (include is None or kind in include) and (exclude is None or kind not in exclude)
    }


__all__ = ["STATUS_ORDER", "graph_html", "graph_mimebundle", "graph_svg"]
