"""Tests of the SVG/HTML picture of a TaskGraph (``aethergraph.graph.picture``).

The SVG is parsed with ElementTree (it must be well-formed XML) and checked for what a reader of
the picture relies on: one box per node (or per tool once summarized), colours by status,
tooltips, escaping of user text, no network references, and a layout whose boxes do not overlap.
Graphs are built by hand and by running small graphs (tools prefixed ``pic_``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import combinations
from typing import Any

import pytest

from aethergraph import NodeStatus, TaskGraph, TaskNode, ToolError, graph_fn, run, tool
from aethergraph.graph.export import STATUS_COLORS
from aethergraph.graph.picture import graph_html, graph_mimebundle, graph_svg

SVG = "{http://www.w3.org/2000/svg}"


@tool(outputs=["y"])
def pic_inc(x: int) -> dict[str, Any]:
    return {"y": x + 1}


@tool(outputs=["y"])
def pic_boom(x: int) -> dict[str, Any]:
    raise ValueError(f"<script>alert({x})</script> & \x1b[31mred\x1b[0m")


@tool(outputs=["total"])
def pic_sum(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


class ReusedNode(TaskNode):
    """A node that can carry the ``reused`` marker whether or not TaskNode declares it (a
    subclass of a class with ``__slots__`` has a ``__dict__``)."""

    reused: Any = None


# -- helpers ----------------------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class", "").split()[:1] == [kind]]


def title(group: ET.Element) -> str:
    element = group.find(f"{SVG}title")
    assert element is not None
    return element.text or ""


def box(group: ET.Element) -> ET.Element:
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    return rect


def by_id(root: ET.Element) -> dict[str, ET.Element]:
    """Node groups by node id (the tooltip's first line)."""
    return {title(g).split("\n")[0]: g for g in groups(root, "ag-node")}


def assert_no_overlap(root: ET.Element, kind: str) -> None:
    rects = []
    for g in groups(root, kind):
        r = box(g)
        x, y = float(r.get("x", 0)), float(r.get("y", 0))
        rects.append((x, y, x + float(r.get("width", 0)), y + float(r.get("height", 0))))
    for a, b in combinations(rects, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    assert all(r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height for r in rects)


def assert_offline(text: str) -> None:
    """No script and no URL but the SVG namespace: the picture must render with no network."""
    assert "<script" not in text.lower()
    assert set(re.findall(r"https?://[^\s\"'<>]*", text)) <= {"http://www.w3.org/2000/svg"}
    assert "@import" not in text
    assert "<style" not in text.lower()


def hand_graph() -> TaskGraph:
    g = TaskGraph("pic_hand", run_id="0123456789abcdef")
    g.add_node(
        TaskNode(
            "load",
            "pic_load",
            status=NodeStatus.DONE,
            attempts=1,
            started_at=10.0,
            finished_at=12.5,
        )
    )
    g.add_node(TaskNode("a", "pic_sim", deps=("load",), status=NodeStatus.RUNNING, started_at=11.0))
    error = {"exc_type": "KeyError", "message": "no key 'k'"}
    g.add_node(
        TaskNode("b", "pic_sim", deps=("load",), status=NodeStatus.FAILED, attempts=2, error=error)
    )
    g.add_node(TaskNode("c", "pic_sum", deps=("a", "b"), status=NodeStatus.SKIPPED))
    g.add_node(TaskNode("d", "pic_sum", deps=("load", "c"), status=NodeStatus.CANCELLED))
    g.add_node(TaskNode("e", "pic_sum", deps=("load",)))
    return g


def fan_out(n: int, *, running: int = 0, pending: int = 0) -> TaskGraph:
    """A sweep: one load, ``n`` simulate nodes, one reduce (built by hand: fast)."""
    g = TaskGraph("pic_sweep", run_id="r-fan")
    g.add_node(TaskNode("load", "pic_load", status=NodeStatus.DONE))
    for i in range(n):
        status = NodeStatus.DONE
        if i >= n - running - pending:
            status = NodeStatus.RUNNING if i < n - pending else NodeStatus.PENDING
        began = 1.0 if status is NodeStatus.RUNNING else None  # running on a worker, not sent
        g.add_node(
            TaskNode(f"sim_{i}", "pic_simulate", deps=("load",), status=status, started_at=began)
        )
    g.add_node(TaskNode("reduce", "pic_reduce", deps=tuple(f"sim_{i}" for i in range(n))))
    return g


# -- one box per node ---------------------------------------------------------------------------


def test_small_graph_draws_one_box_per_node_coloured_by_status() -> None:
    g = hand_graph()
    root = parse(graph_svg(g))
    nodes = by_id(root)
    assert sorted(nodes) == sorted(g.nodes)
    for node_id, group in nodes.items():
        status = g[node_id].phase
        assert status == g[node_id].status.value  # none of them is sent and waiting
        fill, stroke = STATUS_COLORS[status]
        assert f"ag-{status}" in group.get("class", "")
        assert (box(group).get("fill"), box(group).get("stroke")) == (fill, stroke)
        assert box(group).get("stroke-dasharray") is None
    assert len(root.findall(f".//{SVG}path[@class='ag-edge']")) == len(g.edges)
    assert_no_overlap(root, "ag-node")


def test_tooltips_say_tool_status_attempts_duration_and_error() -> None:
    nodes = by_id(parse(graph_svg(hand_graph())))
    load = title(nodes["load"]).split("\n")
    assert load[:4] == ["load", "tool: pic_load", "status: done", "attempts: 1"]
    assert "duration: 2.5 s" in load
    failed = title(nodes["b"])
    assert "status: failed" in failed
    assert "attempts: 2" in failed
    assert "error: KeyError: no key 'k'" in failed
    assert "duration" not in title(nodes["a"])
    assert "error" not in title(nodes["e"])


def test_layers_run_left_to_right_along_dependencies() -> None:
    g = hand_graph()
    nodes = by_id(parse(graph_svg(g)))

    def x(node_id: str) -> float:
        return float(box(nodes[node_id]).get("x", 0))

    for src, dst in g.edges:
        assert x(src) < x(dst), (src, dst)
    assert x("a") == x("b")  # the same layer: one column


def test_legend_counts_statuses_and_the_header_names_the_run() -> None:
    g = hand_graph()
    root = parse(graph_svg(g))
    legend = sorted(title(item) for item in groups(root, "ag-legend"))
    assert legend == ["cancelled 1", "done 1", "failed 1", "pending 1", "running 1", "skipped 1"]
    page = graph_html(g)
    assert page.startswith(
        '<div class="aethergraph-picture" style="max-width:100%; overflow:auto">'
    )
    header = page.split("<svg", 1)[0]
    assert "pic_hand" in header
    assert 'run <span title="0123456789abcdef">01234567</span>' in header
    assert "1 done · 1 running · 1 failed · 1 pending · 1 skipped · 1 cancelled" in header
    assert_offline(page)


def test_a_real_run_with_a_failure_draws_the_error_and_the_skipped_nodes() -> None:
    @graph_fn(name="pic_failing")
    async def body() -> Any:
        a = pic_inc(x=1)
        bad = pic_boom(x=a["y"])
        after = pic_inc(x=bad["y"])
        total = pic_sum(xs=[after["y"], a["y"]])
        return {"t": total["total"], "ok": pic_inc(x=a["y"])["y"]}

    with pytest.raises(ToolError):
        run(body)
    g = body.last_graph
    assert g is not None
    svg = g.to_svg()
    assert_offline(svg)
    root = parse(svg)
    nodes = by_id(root)
    assert len(nodes) == len(g) == 5
    statuses = {node_id: g[node_id].status.value for node_id in nodes}
    assert sorted(statuses.values()) == ["done", "done", "failed", "skipped", "skipped"]
    failed = nodes["pic_boom_0"]
    assert box(failed).get("fill") == STATUS_COLORS["failed"][0]
    tooltip = title(failed)
    assert "ValueError: <script>alert(2)</script> & \ufffd[31mred\ufffd[0m" in tooltip
    for node_id, status in statuses.items():
        assert box(nodes[node_id]).get("stroke") == STATUS_COLORS[status][1]
    # the edge out of the failed node is drawn in the failed colour, the others grey
    red = [p for p in root.iter(f"{SVG}path") if p.get("stroke") == STATUS_COLORS["failed"][1]]
    assert len(red) == 1
    assert "pic_boom_0 → pic_inc_1" in (red[0].findtext(f"{SVG}title") or "")
    assert_no_overlap(root, "ag-node")


def test_user_text_is_escaped_everywhere() -> None:
    g = TaskGraph('<script>alert("g")</script>', run_id="<b>run</b>")
    g.add_node(TaskNode("<script>alert(1)</script>", "pic_<img src=x>", status=NodeStatus.DONE))
    g.add_node(
        TaskNode(
            "n\"&'",
            "pic_t",
            deps=("<script>alert(1)</script>",),
            status=NodeStatus.FAILED,
            error={"exc_type": "E<script>", "message": "</title><script>x()</script>\x00\x07"},
        )
    )
    for text in (graph_svg(g), graph_html(g), graph_svg(g, max_nodes=1)):
        assert_offline(text)
        assert "<img" not in text
    root = parse(graph_svg(g))
    nodes = by_id(root)
    assert set(nodes) == {"<script>alert(1)</script>", "n\"&'"}
    assert "E<script>: </title><script>x()</script>\ufffd\ufffd" in title(nodes["n\"&'"])
    summary = parse(graph_svg(g, max_nodes=1))
    assert {title(t).split("\n")[0] for t in groups(summary, "ag-tool")} == {
        "tool: pic_<img src=x>",
        "tool: pic_t",
    }


def test_long_ids_are_clipped_in_the_box_but_whole_in_the_tooltip() -> None:
    long_id = "pic_" + "x" * 200
    g = TaskGraph("pic_long")
    g.add_node(TaskNode(long_id, "pic_t"))
    root = parse(graph_svg(g))
    (group,) = groups(root, "ag-node")
    assert title(group).split("\n")[0] == long_id
    drawn = "".join(group.find(f"{SVG}text").itertext())  # type: ignore[union-attr]
    assert drawn.endswith("…")
    assert len(drawn) < 40
    assert float(box(group).get("width", 0)) < 400


def test_an_empty_graph_is_still_a_picture() -> None:
    root = parse(graph_svg(TaskGraph("pic_empty")))
    assert groups(root, "ag-node") == []
    assert "empty graph" in "".join(root.itertext())


def test_a_wide_layer_gets_one_line_boxes_that_do_not_overlap() -> None:
    g = fan_out(40)
    root = parse(graph_svg(g))
    nodes = by_id(root)
    assert len(nodes) == 42
    heights = {float(box(group).get("height", 0)) for group in nodes.values()}
    assert max(heights) < 26  # one line each: a 40-node column stays readable
    assert_no_overlap(root, "ag-node")


# -- reused nodes -----------------------------------------------------------------------------


def test_reused_nodes_are_dashed_and_counted() -> None:
    cached = ReusedNode("a", "pic_t", status=NodeStatus.DONE)
    resumed = ReusedNode("b", "pic_t", deps=("a",), status=NodeStatus.DONE)
    plain = ReusedNode("c", "pic_t", deps=("b",), status=NodeStatus.DONE)
    cached.reused, resumed.reused, plain.reused = "cached", "resumed", True  # True: no marker
    g = TaskGraph("pic_reused", run_id="r")
    for node in (cached, resumed, plain, TaskNode("d", "pic_t", deps=("c",))):
        g.add_node(node)  # a plain TaskNode has no such attribute at all
    root = parse(graph_svg(g))
    nodes = by_id(root)
    assert box(nodes["a"]).get("stroke-dasharray")
    assert box(nodes["b"]).get("stroke-dasharray")
    assert box(nodes["c"]).get("stroke-dasharray") is None
    assert box(nodes["d"]).get("stroke-dasharray") is None
    assert "reused: cached" in title(nodes["a"])
    assert "reused: resumed" in title(nodes["b"])
    assert "reused" not in title(nodes["c"])
    legend = {title(item) for item in groups(root, "ag-legend")}
    assert {"done 3", "pending 1", "cached 1", "resumed 1"} == legend
    assert "3 done · 1 pending · 1 cached · 1 resumed" in graph_html(g)
    summary = parse(graph_svg(g, max_nodes=2))
    (tool_box,) = groups(summary, "ag-tool")
    assert "1 cached" in "".join(tool_box.itertext())


# -- summarized by tool -------------------------------------------------------------------------


def test_a_large_graph_is_summarized_one_box_per_tool_with_a_status_bar() -> None:
    g = fan_out(200, running=12, pending=8)
    svg = graph_svg(g)
    assert_offline(svg)
    root = parse(svg)
    assert groups(root, "ag-node") == []
    tools = {title(t).split("\n")[0].removeprefix("tool: "): t for t in groups(root, "ag-tool")}
    assert sorted(tools) == ["pic_load", "pic_reduce", "pic_simulate"]
    sim = tools["pic_simulate"]
    text = " ".join(sim.itertext())
    assert "200 nodes" in text
    assert "180 done · 12 running · 8 pending" in text
    bar = {r.get("class"): r for r in sim.iter(f"{SVG}rect") if "ag-bar" in r.get("class", "")}
    assert set(bar) == {"ag-bar ag-done", "ag-bar ag-running", "ag-bar ag-pending"}
    for status in ("done", "running", "pending"):
        assert bar[f"ag-bar ag-{status}"].get("fill") == STATUS_COLORS[status][1]
    widths = {k: float(r.get("width", 0)) for k, r in bar.items()}
    assert widths["ag-bar ag-done"] == pytest.approx(15 * widths["ag-bar ag-running"], rel=0.05)
    assert box(sim).get("stroke") == STATUS_COLORS["running"][1]  # the most urgent status
    edges = root.findall(f".//{SVG}path[@class='ag-edge']")
    assert len(edges) == 2
    assert sorted(e.findtext(f"{SVG}title") or "" for e in edges) == [
        "pic_load → pic_simulate: 200 edges",
        "pic_simulate → pic_reduce: 200 edges",
    ]
    assert "202 nodes" in "".join(root.itertext())
    assert_no_overlap(root, "ag-tool")
    whole = parse(graph_svg(g, max_nodes=len(g)))  # not more than max_nodes: node by node
    assert len(groups(whole, "ag-node")) == 202
    assert groups(whole, "ag-tool") == []
    assert_no_overlap(whole, "ag-node")


def test_a_summary_of_a_real_run() -> None:
    @graph_fn(name="pic_sweep_run")
    async def body(n: int) -> Any:
        a = pic_inc(x=0)
        ys = [pic_inc(x=a["y"])["y"] for _ in range(n)]
        return {"t": pic_sum(xs=ys)["total"]}

    assert run(body, n=8) == {"t": 16}
    g = body.last_graph
    assert g is not None
    root = parse(graph_svg(g, max_nodes=5))
    tools = [title(t).split("\n")[0] for t in groups(root, "ag-tool")]
    assert tools == ["tool: pic_inc", "tool: pic_sum"]
    # pic_inc feeds pic_inc (a self-loop) and pic_sum
    edges = [e.findtext(f"{SVG}title") for e in root.iter(f"{SVG}path") if e.get("class")]
    assert sorted(edges) == ["pic_inc → pic_inc: 8 edges", "pic_inc → pic_sum: 8 edges"]


def test_cycles_between_tools_are_drawn_without_hanging() -> None:
    g = TaskGraph("pic_cycle")
    prev: tuple[str, ...] = ()
    for i in range(5):  # A → B → A → B …: the tool graph is a cycle, the node graph is not
        g.add_node(TaskNode(f"a{i}", "pic_A", deps=prev, status=NodeStatus.DONE))
        g.add_node(TaskNode(f"b{i}", "pic_B", deps=(f"a{i}",)))
        prev = (f"b{i}",)
    g.add_node(TaskNode("c", "pic_C", deps=("a0", "b4")))
    g.add_node(TaskNode("c2", "pic_C", deps=("c",)))  # C → C
    root = parse(graph_svg(g, max_nodes=3))
    assert len(groups(root, "ag-tool")) == 3
    edges = {e.findtext(f"{SVG}title"): e for e in root.iter(f"{SVG}path") if e.get("class")}
    assert set(edges) == {
        "pic_A → pic_B: 5 edges",
        "pic_B → pic_A: 4 edges",
        "pic_A → pic_C: 1 edge",
        "pic_B → pic_C: 1 edge",
        "pic_C → pic_C: 1 edge",
    }
    dashed = [t for t, e in edges.items() if e.get("stroke-dasharray")]
    assert dashed == ["pic_B → pic_A: 4 edges"]  # the edge that closes the cycle
    assert_no_overlap(root, "ag-tool")

    three = TaskGraph("pic_cycle3")  # A → B → C → A through different nodes
    three.add_node(TaskNode("a0", "pic_A"))
    three.add_node(TaskNode("b0", "pic_B", deps=("a0",)))
    three.add_node(TaskNode("c0", "pic_C", deps=("b0",)))
    three.add_node(TaskNode("a1", "pic_A", deps=("c0",)))
    root = parse(graph_svg(three, max_nodes=1))
    assert len(groups(root, "ag-tool")) == 3
    assert len([e for e in root.iter(f"{SVG}path") if e.get("stroke-dasharray")]) == 1


# -- Jupyter ----------------------------------------------------------------------------------


def test_every_marker_reference_is_defined_and_ids_differ_between_pictures() -> None:
    svgs = [graph_svg(hand_graph()), graph_svg(fan_out(3))]
    ids = []
    for svg in svgs:
        root = parse(svg)
        defined = {m.get("id") for m in root.iter(f"{SVG}marker")}
        used = {re.sub(r"url\(#(.*)\)", r"\1", p.get("marker-end", "")) for p in root.iter()}
        assert used - {""} <= defined
        ids.append(defined)
    assert not ids[0] & ids[1]
    assert graph_svg(hand_graph()) == svgs[0]  # deterministic


def test_repr_mimebundle_and_the_repr_methods() -> None:
    g = hand_graph()
    bundle = g._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/html", "text/plain"}
    assert bundle["image/svg+xml"] == g._repr_svg_() == g.to_svg()
    assert bundle["text/html"] == g._repr_html_()
    assert bundle["image/svg+xml"] in bundle["text/html"]
    assert bundle["text/plain"] == repr(g)
    assert set(g._repr_mimebundle_(include={"text/html"})) == {"text/html"}
    assert set(g._repr_mimebundle_(exclude={"text/html", "image/svg+xml"})) == {"text/plain"}
    assert g._repr_mimebundle_(include=["image/svg+xml"], exclude=["image/svg+xml"]) == {}
    assert graph_mimebundle(g, include={"text/plain"}) == {"text/plain": repr(g)}
    assert g.to_svg(max_nodes=1) != g.to_svg()
