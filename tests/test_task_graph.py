"""Tests of the TaskGraph data model: building, queries, JSON round-trips and pictures.

Graphs are built both by hand (``TaskGraph`` / ``TaskNode``) and by tracing real runs of
``@graph_fn`` bodies, whose ``last_graph`` is then inspected.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest

from aethergraph import NodeStatus, TaskGraph, TaskNode, ToolError, graph_fn, run, tool
from aethergraph.graph.refs import OpaqueValue, RefSpec

# -- tools used by the traced graphs of this module (names prefixed: the registry is global) --


@tool(outputs=["total"])
def tg_sum(xs: list[float]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool(outputs=["x", "y"])
def tg_pair(a: int) -> dict[str, Any]:
    return {"x": a, "y": a * 10}


@tool
def tg_echo(value: Any) -> dict[str, Any]:
    return {"value": value}


@tool
def tg_combine(a: Any = None, b: Any = None) -> dict[str, Any]:
    return {"a": a, "b": b}


class Widget:
    """A value JSON cannot hold: graph dumps keep a ``$repr`` preview of it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Widget({self.n})"


class LongRepr:
    def __repr__(self) -> str:
        return "L" * 1000


# -- building by hand -------------------------------------------------------------------------


def test_task_node_defaults() -> None:
    node = TaskNode("n1", "some_tool")
    assert node.node_id == "n1"
    assert node.tool == "some_tool"
    assert node.version == "0.0.0"
    assert node.inputs == {}
    assert node.deps == ()
    assert node.queue is None
    assert node.status is NodeStatus.PENDING
    assert node.attempts == 0
    assert node.created_at is None
    assert node.started_at is None
    assert node.finished_at is None
    assert node.error is None
    assert node.duration is None


def test_task_node_duration_from_timings() -> None:
    node = TaskNode("n1", "t", started_at=10.0, finished_at=12.5)
    assert node.duration == pytest.approx(2.5)
    assert TaskNode("n2", "t", started_at=10.0).duration is None
    assert TaskNode("n3", "t", finished_at=10.0).duration is None


def test_node_status_values_and_finished_flag() -> None:
    assert [s.value for s in NodeStatus] == [
        "pending",
        "running",
        "done",
        "failed",
        "skipped",
        "cancelled",
    ]
    assert not NodeStatus.PENDING.finished
    assert not NodeStatus.RUNNING.finished
    for status in (NodeStatus.DONE, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED):
        assert status.finished
    assert NodeStatus("done") is NodeStatus.DONE
    assert NodeStatus.DONE == "done"


def test_hand_built_graph_queries() -> None:
    g = TaskGraph("hand", run_id="r1", version="2.0.0", inputs={"x": 1}, outputs=["out"])
    a = g.add_node(TaskNode("a", "load"))
    g.add_node(TaskNode("b", "clean", deps=("a",)))
    g.add_node(TaskNode("c", "stats", deps=("a",)))
    g.add_node(TaskNode("d", "report", deps=("b", "c")))
    assert a is g["a"]
    assert len(g) == 4
    assert "a" in g
    assert "zzz" not in g
    assert [n.node_id for n in g] == ["a", "b", "c", "d"]
    assert g.edges == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert g.dependents("a") == ["b", "c"]
    assert g.dependents("d") == []
    assert g.graph_id == "hand"
    assert g.run_id == "r1"
    assert g.version == "2.0.0"
    assert g.inputs == {"x": 1}
    assert g.outputs == ["out"]
    with pytest.raises(KeyError):
        g["zzz"]


def test_add_node_rejects_duplicate_ids() -> None:
    g = TaskGraph("dup")
    g.add_node(TaskNode("a", "t"))
    with pytest.raises(ValueError, match="already has a node 'a'"):
        g.add_node(TaskNode("a", "other"))
    assert g["a"].tool == "t"
    assert len(g) == 1


def test_add_node_rejects_unknown_deps() -> None:
    g = TaskGraph("deps")
    g.add_node(TaskNode("a", "t"))
    with pytest.raises(ValueError, match="'missing'"):
        g.add_node(TaskNode("b", "t", deps=("a", "missing")))
    assert "b" not in g
    assert len(g) == 1


def test_status_counts_lists_every_status() -> None:
    g = TaskGraph("counts")
    assert g.status_counts() == {s.value: 0 for s in NodeStatus}
    g.add_node(TaskNode("a", "t", status=NodeStatus.DONE))
    g.add_node(TaskNode("b", "t", status=NodeStatus.DONE))
    g.add_node(TaskNode("c", "t", status=NodeStatus.FAILED))
    g.add_node(TaskNode("d", "t", deps=("c",), status=NodeStatus.SKIPPED))
    g.add_node(TaskNode("e", "t"))
    assert g.status_counts() == {
        "pending": 1,
        "running": 0,
        "done": 2,
        "failed": 1,
        "skipped": 1,
        "cancelled": 0,
    }


def _assert_deps_first(graph: TaskGraph, order: list[str]) -> None:
    assert sorted(order) == sorted(graph.nodes)
    assert len(order) == len(set(order))
    position = {node_id: i for i, node_id in enumerate(order)}
    for src, dst in graph.edges:
        assert position[src] < position[dst], (src, dst, order)


def test_topological_order_of_diamond() -> None:
    g = TaskGraph("topo")
    g.add_node(TaskNode("a", "t"))
    g.add_node(TaskNode("b", "t", deps=("a",)))
    g.add_node(TaskNode("c", "t", deps=("a",)))
    g.add_node(TaskNode("d", "t", deps=("c", "b")))
    order = g.topological_order()
    _assert_deps_first(g, order)
    assert order[0] == "a"
    assert order[-1] == "d"


def test_topological_order_rederives_order_when_insertion_is_not_one() -> None:
    # ``nodes`` is a plain dict: insert dependents before their dependencies on purpose.
    g = TaskGraph("topo_rev")
    g.nodes["d"] = TaskNode("d", "t", deps=("b", "c"))
    g.nodes["c"] = TaskNode("c", "t", deps=("a",))
    g.nodes["b"] = TaskNode("b", "t", deps=("a", "c"))
    g.nodes["a"] = TaskNode("a", "t")
    g.nodes["e"] = TaskNode("e", "t")
    order = g.topological_order()
    _assert_deps_first(g, order)
    assert order.index("a") < order.index("c") < order.index("b") < order.index("d")


# -- graphs traced from real runs -------------------------------------------------------------


@graph_fn(name="tg_pipeline", inputs=["xs"], outputs=["total", "shown"])
async def tg_pipeline(xs: list[float]) -> dict[str, Any]:
    s = tg_sum(xs=xs)
    shown = tg_echo(value=s["total"])
    return {"total": s["total"], "shown": shown["value"]}


def test_run_records_statuses_attempts_and_timings() -> None:
    out = run(tg_pipeline, xs=[1.0, 2.0, 3.5])
    assert out == {"total": 6.5, "shown": 6.5}
    g = tg_pipeline.last_graph
    assert isinstance(g, TaskGraph)
    assert g.graph_id == "tg_pipeline"
    assert g.run_id
    assert [n.tool for n in g] == ["tg_sum", "tg_echo"]
    for node in g:
        assert node.status is NodeStatus.DONE
        assert node.attempts == 1
        assert node.error is None
        assert node.created_at is not None
        assert node.started_at is not None
        assert node.finished_at is not None
        assert node.created_at <= node.started_at <= node.finished_at
        assert node.duration == pytest.approx(node.finished_at - node.started_at)
        assert node.duration >= 0
        assert node.version == "0.1.0"
    first, second = list(g)
    # the downstream node could only start once its input was produced
    assert second.started_at >= first.finished_at
    assert g.status_counts()["done"] == 2
    assert sum(g.status_counts().values()) == 2


def test_run_records_declared_inputs_outputs_and_result_refs() -> None:
    run(tg_pipeline, xs=[2.0, 2.0])
    g = tg_pipeline.last_graph
    assert g.inputs == {"xs": [2.0, 2.0]}
    assert g.outputs == ["total", "shown"]
    assert g.version == tg_pipeline.version
    sum_id, echo_id = list(g.nodes)
    data = g.to_dict()
    assert data["inputs"] == {"xs": [2.0, 2.0]}
    assert data["outputs"] == ["total", "shown"]
    assert data["result"] == {
        "total": {"$ref": sum_id, "path": ["total"]},
        "shown": {"$ref": echo_id, "path": ["value"]},
    }
    assert data["graph_id"] == "tg_pipeline"
    assert data["run_id"] == g.run_id
    assert data["format"] == 1
    loaded = TaskGraph.from_dict(data)
    assert loaded.result_refs == {
        "total": RefSpec(sum_id, ("total",)),
        "shown": RefSpec(echo_id, ("value",)),
    }


def test_graph_without_declared_outputs_records_none() -> None:
    @graph_fn(name="tg_no_outputs")
    async def body(a: int) -> Any:
        return tg_pair(a=a)

    out = run(body, a=4)
    assert out == {"x": 4, "y": 40}
    g = body.last_graph
    assert g.outputs is None
    assert g.inputs == {"a": 4}
    (node_id,) = g.nodes
    assert g.to_dict()["result"] == {"$ref": node_id, "path": []}


def test_retried_node_records_attempts() -> None:
    calls: list[int] = []

    @tool(name="tg_flaky", retries=2, retry_backoff=0.0, retry_jitter=False)
    def flaky(x: int) -> dict[str, Any]:
        calls.append(x)
        if len(calls) < 2:
            raise RuntimeError("first attempt fails")
        return {"x": x}

    @graph_fn(name="tg_retry_graph")
    async def body() -> Any:
        return flaky(x=7)

    assert run(body) == {"x": 7}
    (node,) = body.last_graph
    assert node.status is NodeStatus.DONE
    assert node.attempts == 2
    assert calls == [7, 7]
    assert node.created_at <= node.started_at <= node.finished_at


def test_failed_node_and_skipped_dependent_statuses() -> None:
    @tool(name="tg_boom")
    def boom(x: int) -> dict[str, Any]:
        raise ValueError(f"bad x {x}")

    @graph_fn(name="tg_fail_graph")
    async def body() -> Any:
        b = boom(x=1)
        e = tg_echo(value=b["result"])
        ok = tg_echo(value=5)
        return {"e": e, "ok": ok}

    with pytest.raises(ToolError) as info:
        run(body)
    assert info.value.exc_type == "ValueError"
    g = body.last_graph
    statuses = {n.node_id: n.status for n in g}
    assert statuses == {
        "tg_boom_0": NodeStatus.FAILED,
        "tg_echo_0": NodeStatus.SKIPPED,
        "tg_echo_1": NodeStatus.DONE,
    }
    failed = g["tg_boom_0"]
    assert failed.attempts == 1
    assert failed.error is not None
    assert failed.error["exc_type"] == "ValueError"
    assert "bad x 1" in failed.error["message"]
    assert g["tg_echo_0"].attempts == 0
    assert g.status_counts() == {
        "pending": 0,
        "running": 0,
        "done": 1,
        "failed": 1,
        "skipped": 1,
        "cancelled": 0,
    }
    json.dumps(g.to_dict())


# -- edges from handle / ref wiring -----------------------------------------------------------


def test_edges_from_handles_and_refs() -> None:
    @graph_fn(name="tg_edges_graph")
    async def body() -> Any:
        p = tg_pair(a=1)
        s = tg_sum(xs=[1, 2])
        whole = tg_echo(value=p)  # a whole handle
        one = tg_echo(value=s["total"])  # a ref
        attr = tg_echo(value=p.y)  # attribute access gives a ref too
        plain = tg_echo(value=3)  # no refs: no edge
        return {
            "whole": whole["value"],
            "one": one["value"],
            "attr": attr["value"],
            "plain": plain["value"],
        }

    out = run(body)
    assert out == {"whole": {"x": 1, "y": 10}, "one": 3, "attr": 10, "plain": 3}
    g = body.last_graph
    assert g.edges == [
        ("tg_pair_0", "tg_echo_0"),
        ("tg_sum_0", "tg_echo_1"),
        ("tg_pair_0", "tg_echo_2"),
    ]
    assert g["tg_echo_3"].deps == ()
    assert g.dependents("tg_pair_0") == ["tg_echo_0", "tg_echo_2"]


def test_edges_from_refs_nested_in_lists_and_dicts() -> None:
    @graph_fn(name="tg_nested_edges")
    async def body() -> Any:
        p = tg_pair(a=2)
        s = tg_sum(xs=[5])
        q = tg_pair(a=3)
        nested = tg_combine(
            a=[p["x"], {"deep": [s["total"]]}],
            b={"k": (q["y"], 1), "plain": "text"},
        )
        return nested

    out = run(body)
    assert out == {"a": [2, {"deep": [5]}], "b": {"k": (30, 1), "plain": "text"}}
    g = body.last_graph
    assert g["tg_combine_0"].deps == ("tg_pair_0", "tg_sum_0", "tg_pair_1")
    assert [e for e in g.edges if e[1] == "tg_combine_0"] == [
        ("tg_pair_0", "tg_combine_0"),
        ("tg_sum_0", "tg_combine_0"),
        ("tg_pair_1", "tg_combine_0"),
    ]


def test_same_upstream_used_twice_gives_one_edge() -> None:
    @graph_fn(name="tg_one_edge")
    async def body() -> Any:
        p = tg_pair(a=4)
        return tg_combine(a=p["x"], b=[p["y"], p, {"again": p.x}])

    out = run(body)
    assert out == {"a": 4, "b": [40, {"x": 4, "y": 40}, {"again": 4}]}
    g = body.last_graph
    assert g["tg_combine_0"].deps == ("tg_pair_0",)
    assert g.edges == [("tg_pair_0", "tg_combine_0")]


def test_traced_node_inputs_keep_refs_as_ref_specs() -> None:
    @graph_fn(name="tg_input_refs")
    async def body() -> Any:
        p = tg_pair(a=1)
        return tg_combine(a=p["x"], b=[p])

    run(body)
    node = body.last_graph["tg_combine_0"]
    encoded = node.to_dict()["inputs"]
    assert encoded == {
        "a": {"$ref": "tg_pair_0", "path": ["x"]},
        "b": [{"$ref": "tg_pair_0", "path": []}],
    }
    loaded = TaskNode.from_dict(node.to_dict())
    assert loaded.inputs == {"a": RefSpec("tg_pair_0", ("x",)), "b": [RefSpec("tg_pair_0", ())]}
    assert loaded.inputs["a"].node_id == "tg_pair_0"
    assert loaded.inputs["a"].path == ("x",)


# -- serialization ----------------------------------------------------------------------------

WHEN = datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.UTC)


@graph_fn(name="tg_messy", outputs=["combined", "pair"])
async def tg_messy(when: Any, thing: Any, ratio: float) -> dict[str, Any]:
    p = tg_pair(a=1)
    s = tg_sum(xs=[1.5, 2.5])
    combined = tg_combine(
        a={
            "$special": p["x"],
            "$ref": "looks like a ref but is data",
            "nested": [s["total"], (p["y"], "t", 2)],
            "floats": [float("nan"), float("inf"), float("-inf"), 0.5],
            1: "int key",
        },
        b=(when, thing, {"$dict": 1}, {"$repr": "fake", "$type": "fake"}),
    )
    return {"combined": combined, "pair": p}


def _messy_graph() -> TaskGraph:
    run(tg_messy, when=WHEN, thing=Widget(3), ratio=float("nan"))
    return tg_messy.last_graph


def test_to_dict_is_json_serializable_without_nan() -> None:
    g = _messy_graph()
    data = g.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert g.to_json(allow_nan=False) == text
    assert [n["id"] for n in data["nodes"]] == ["tg_pair_0", "tg_sum_0", "tg_combine_0"]
    assert data["edges"] == [["tg_pair_0", "tg_combine_0"], ["tg_sum_0", "tg_combine_0"]]
    for node in data["nodes"]:
        assert node["status"] == "done"
        assert node["attempts"] == 1
        assert set(node) >= {"id", "tool", "version", "inputs", "deps", "status", "error"}


def test_to_dict_encodes_special_values() -> None:
    data = _messy_graph().to_dict()
    assert data["inputs"]["when"] == {"$repr": repr(WHEN), "$type": "datetime.datetime"}
    assert data["inputs"]["thing"]["$repr"] == "Widget(3)"
    assert data["inputs"]["thing"]["$type"].endswith("Widget")
    assert data["inputs"]["ratio"] == {"$float": "nan"}
    combined = data["nodes"][2]["inputs"]
    a = combined["a"]
    # a dict with "$" keys is wrapped so it cannot be mistaken for a marker
    assert set(a) == {"$dict"}
    inner = a["$dict"]
    assert inner["$special"] == {"$ref": "tg_pair_0", "path": ["x"]}
    assert inner["$ref"] == "looks like a ref but is data"
    assert inner["nested"] == [
        {"$ref": "tg_sum_0", "path": ["total"]},
        {"$tuple": [{"$ref": "tg_pair_0", "path": ["y"]}, "t", 2]},
    ]
    assert inner["floats"] == [
        {"$float": "nan"},
        {"$float": "inf"},
        {"$float": "-inf"},
        0.5,
    ]
    assert inner["1"] == "int key"
    b = combined["b"]
    assert set(b) == {"$tuple"}
    assert b["$tuple"][0]["$type"] == "datetime.datetime"
    assert b["$tuple"][1]["$repr"] == "Widget(3)"
    assert b["$tuple"][2] == {"$dict": {"$dict": 1}}
    assert b["$tuple"][3] == {"$dict": {"$repr": "fake", "$type": "fake"}}


def test_from_dict_round_trip_of_traced_graph() -> None:
    g = _messy_graph()
    data = g.to_dict()
    loaded = TaskGraph.from_dict(data)
    assert loaded.to_dict() == data
    assert TaskGraph.from_dict(loaded.to_dict()).to_dict() == data
    # the decoded structures are the natural Python values again
    assert loaded.graph_id == g.graph_id
    assert loaded.run_id == g.run_id
    assert loaded.outputs == ["combined", "pair"]
    assert list(loaded.nodes) == list(g.nodes)
    assert loaded.edges == g.edges
    assert math.isnan(loaded.inputs["ratio"])
    assert loaded.inputs["when"] == OpaqueValue(repr(WHEN), "datetime.datetime")
    a = loaded["tg_combine_0"].inputs["a"]
    assert a["$special"] == RefSpec("tg_pair_0", ("x",))
    assert a["$ref"] == "looks like a ref but is data"
    assert a["nested"][1] == (RefSpec("tg_pair_0", ("y",)), "t", 2)
    assert math.isnan(a["floats"][0])
    assert a["floats"][1:] == [math.inf, -math.inf, 0.5]
    b = loaded["tg_combine_0"].inputs["b"]
    assert isinstance(b, tuple)
    assert b[2] == {"$dict": 1}
    assert b[3] == {"$repr": "fake", "$type": "fake"}
    for original, copy in zip(g, loaded, strict=True):
        assert copy.status is original.status
        assert copy.attempts == original.attempts
        assert copy.created_at == original.created_at
        assert copy.started_at == original.started_at
        assert copy.finished_at == original.finished_at
        assert copy.deps == original.deps
    assert loaded.result_refs == {
        "combined": RefSpec("tg_combine_0", ()),
        "pair": RefSpec("tg_pair_0", ()),
    }


def test_json_round_trip() -> None:
    g = _messy_graph()
    text = g.to_json()
    loaded = TaskGraph.from_json(text)
    assert loaded.to_dict() == g.to_dict()
    assert loaded.to_json() == text
    assert json.loads(g.to_json(indent=2)) == g.to_dict()


def test_round_trip_of_failed_graph_keeps_errors() -> None:
    @tool(name="tg_fails_for_dump")
    def fails() -> dict[str, Any]:
        raise KeyError("nope")

    @graph_fn(name="tg_failed_dump")
    async def body() -> Any:
        f = fails()
        return tg_echo(value=f)

    with pytest.raises(ToolError):
        run(body)
    g = body.last_graph
    data = g.to_dict()
    json.dumps(data)
    loaded = TaskGraph.from_dict(data)
    assert loaded.to_dict() == data
    assert loaded["tg_fails_for_dump_0"].status is NodeStatus.FAILED
    assert loaded["tg_fails_for_dump_0"].error["exc_type"] == "KeyError"
    assert loaded["tg_echo_0"].status is NodeStatus.SKIPPED


def test_long_repr_is_truncated_in_dump() -> None:
    g = TaskGraph("long", inputs={"v": LongRepr()})
    preview = g.to_dict()["inputs"]["v"]["$repr"]
    assert len(preview) <= 200
    assert preview.endswith("...")
    assert preview.startswith("LLLL")


def test_hand_built_round_trip() -> None:
    g = TaskGraph("hand_rt", run_id="r9", version="1.2.3", inputs={"t": (1, 2)}, outputs=["o"])
    g.add_node(TaskNode("a", "load", "0.2.0", {"path": "x.csv"}, queue="io", created_at=1.0))
    g.add_node(
        TaskNode(
            "b",
            "clean",
            inputs={"rows": RefSpec("a", ("rows", 0))},
            deps=("a",),
            status=NodeStatus.RUNNING,
            attempts=3,
            started_at=2.0,
        )
    )
    g.result_refs = {"o": RefSpec("b", ())}
    data = g.to_dict()
    assert data["nodes"][0]["queue"] == "io"
    assert data["nodes"][1]["inputs"] == {"rows": {"$ref": "a", "path": ["rows", 0]}}
    assert data["inputs"] == {"t": {"$tuple": [1, 2]}}
    loaded = TaskGraph.from_json(g.to_json())
    assert loaded.to_dict() == data
    assert loaded.inputs == {"t": (1, 2)}
    assert loaded["b"].inputs["rows"] == RefSpec("a", ("rows", 0))
    assert loaded["b"].status is NodeStatus.RUNNING
    assert loaded["b"].attempts == 3
    assert loaded["a"].queue == "io"
    assert loaded["a"].version == "0.2.0"


def test_from_dict_rejects_wrong_format() -> None:
    data = _messy_graph().to_dict()
    data["format"] = 999
    with pytest.raises(ValueError, match="format"):
        TaskGraph.from_dict(data)
    with pytest.raises(ValueError, match="format"):
        TaskGraph.from_json(json.dumps({**data, "format": "v0"}))


def test_from_dict_rejects_unknown_deps() -> None:
    g = TaskGraph("bad_deps")
    g.add_node(TaskNode("a", "t"))
    data = g.to_dict()
    data["nodes"].append(TaskNode("b", "t", deps=("ghost",)).to_dict())
    with pytest.raises(ValueError, match="ghost"):
        TaskGraph.from_dict(data)


# -- pictures ---------------------------------------------------------------------------------


def test_to_mermaid_of_traced_graph() -> None:
    @graph_fn(name="tg_mermaid_graph")
    async def body() -> Any:
        p = tg_pair(a=1)
        s = tg_sum(xs=[p["x"], p["y"]])
        return tg_combine(a=p, b=s)

    run(body)
    g = body.last_graph
    text = g.to_mermaid()
    lines = text.strip().splitlines()
    assert lines[0].startswith("flowchart")
    node_lines = [ln for ln in lines if ":::" in ln]
    edge_lines = [ln for ln in lines if "-->" in ln]
    class_lines = [ln for ln in lines if ln.strip().startswith("classDef")]
    assert len(node_lines) == len(g) == 3
    assert len(edge_lines) == len(g.edges) == 3
    for node_id in g.nodes:
        assert sum(node_id in ln for ln in node_lines) == 1
    assert all(ln.endswith(":::done") for ln in node_lines)
    assert {ln.split()[1] for ln in class_lines} == {s.value for s in NodeStatus} | {"queued"}


def test_to_mermaid_status_classes_and_escaping() -> None:
    g = TaskGraph("mm")
    g.add_node(TaskNode("ok", "ok", status=NodeStatus.DONE))
    g.add_node(TaskNode("bad", "tool_x", deps=("ok",), status=NodeStatus.FAILED))
    g.add_node(TaskNode('q"<x>', "t", deps=("bad",), status=NodeStatus.SKIPPED))
    text = g.to_mermaid()
    lines = text.splitlines()
    node_lines = [ln for ln in lines if ":::" in ln]
    assert len(node_lines) == 3
    assert node_lines[0].endswith(":::done")
    assert node_lines[1].endswith(":::failed")
    assert node_lines[2].endswith(":::skipped")
    assert "tool_x" in node_lines[1]
    # a quote or angle bracket in an id must not break the label
    assert 'q"<x>' not in text
    assert "#quot;" in node_lines[2]
    assert len([ln for ln in lines if "-->" in ln]) == 2


def test_to_dot_is_a_digraph_with_quoted_ids() -> None:
    g = TaskGraph('my "graph"')
    g.add_node(TaskNode("a", "a", status=NodeStatus.DONE))
    g.add_node(TaskNode('b"quoted', "t", deps=("a",), status=NodeStatus.CANCELLED))
    g.add_node(TaskNode("c d", "t", deps=("a", 'b"quoted'), status=NodeStatus.PENDING))
    text = g.to_dot()
    lines = text.strip().splitlines()
    assert lines[0] == 'digraph "my \\"graph\\"" {'
    assert lines[-1] == "}"
    edge_lines = [ln for ln in lines if "->" in ln]
    assert len(edge_lines) == len(g.edges) == 3
    assert '    "a" -> "b\\"quoted";' in edge_lines
    assert '    "a" -> "c d";' in edge_lines
    assert '    "b\\"quoted" -> "c d";' in edge_lines
    node_lines = [ln for ln in lines if "[label=" in ln]
    assert len(node_lines) == 3
    assert node_lines[1].lstrip().startswith('"b\\"quoted" [')
    assert 'tooltip="cancelled"' in node_lines[1]
    assert 'tooltip="pending"' in node_lines[2]


def test_to_dot_of_traced_graph() -> None:
    run(tg_pipeline, xs=[1.0])
    g = tg_pipeline.last_graph
    text = g.to_dot()
    assert text.startswith('digraph "tg_pipeline" {')
    edge_lines = [ln for ln in text.splitlines() if "->" in ln]
    assert edge_lines == [f'    "{src}" -> "{dst}";' for src, dst in g.edges]
    assert len(edge_lines) == 1
    assert text.count('tooltip="done"') == 2
