"""What a message shows as its kwargs in Flower: a bounded dict literal, ids first."""

from __future__ import annotations

import ast

from aethergraph.execution.wire import META, REPR_LIMIT, node_kwargs_repr, pack_kwargs_repr


def test_a_node_message_shows_its_ids_then_its_arguments() -> None:
    meta = {"run_id": "r1", "node_id": "square_3", "attempt": 2, "client": "c"}
    text = node_kwargs_repr(meta, {"x": 3, META: meta})
    assert ast.literal_eval(text) == {
        "run_id": "r1",
        "node_id": "square_3",
        "attempt": 2,
        "args": {"x": 3},
    }


def test_long_arguments_are_cut_and_the_text_stays_a_literal() -> None:
    meta = {"run_id": "r1", "node_id": "n_0", "attempt": 1}
    text = node_kwargs_repr(meta, {"blob": "z" * 50_000})
    assert len(text) <= REPR_LIMIT
    parsed = ast.literal_eval(text)
    assert parsed["run_id"] == "r1"
    assert parsed["args"].endswith("...")


def test_a_pack_names_its_runs_and_nodes_within_the_limit() -> None:
    nodes = [{"run_id": "r1", "node_id": f"square_{i}"} for i in range(5)]
    assert ast.literal_eval(pack_kwargs_repr(nodes)) == {
        "run_id": "r1",
        "nodes": 5,
        "node_ids": [f"square_{i}" for i in range(5)],
    }
    many = [{"run_id": f"r{i % 2}", "node_id": f"a_rather_long_node_name_{i}"} for i in range(500)]
    text = pack_kwargs_repr(many)
    assert len(text) <= REPR_LIMIT
    parsed = ast.literal_eval(text)
    assert parsed["run_ids"] == ["r0", "r1"]
    assert parsed["nodes"] == 500
    assert parsed["node_ids"][-1].endswith("more")
    assert parsed["node_ids"][0] == "a_rather_long_node_name_0"
