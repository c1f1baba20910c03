"""How a run's record reads: one field per message (its nodes ``sent``) and one per node (its
outcome, or skipped / cancelled); a node's state is its latest attempt's."""

from __future__ import annotations

import orjson

from aethergraph.execution.celery.run_record import entry_state, message_entry, node_entries


def _message(task_id: str, *nodes: tuple[str, str, str, int]) -> tuple[str, bytes]:
    return message_entry(task_id=task_id, queue="ag.q", client="c1", tool="t", nodes=list(nodes))


def test_a_node_is_as_its_latest_attempt_says() -> None:
    raw: dict[object, bytes] = dict(
        [
            _message("m1", ("t_0", "m1.0", "i0", 1), ("t_1", "m1.1", "i1", 1)),
            _message("m2", ("t_1", "m2", "i1", 2)),  # t_1 sent again: attempt 2
            _message("m3", ("t_2", "m3", "i2", 1)),
        ]
    )
    raw[b"t_0"] = orjson.dumps({"ok": True, "attempt": 1, "outputs": {}})
    raw[b"t_1"] = orjson.dumps({"ok": False, "attempt": 1})  # the first try
    raw[b"t_2"] = orjson.dumps({"skipped": True, "attempt": 1})
    raw[b"junk"] = b"not json"
    nodes = node_entries(raw)
    assert {node_id: entry_state(entry) for node_id, entry in nodes.items()} == {
        "t_0": "done",
        "t_1": "sent",  # its retry is out: the failed first attempt is history
        "t_2": "skipped",
    }
    assert nodes["t_0"]["ident"] == "i0"  # an outcome has its message's identity
    assert nodes["t_1"] == {
        "sent": "m2",
        "ident": "i1",
        "attempt": 2,
        "task": "m2",
        "queue": "ag.q",
        "client": "c1",
        "tool": "t",
    }
