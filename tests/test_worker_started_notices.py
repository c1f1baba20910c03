"""The worker's started notices (``execution/worker/started.py``), without a worker: which nodes
are reported, when, and that a failing send is logged, not raised."""

from __future__ import annotations

import itertools
import logging
import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aethergraph import tool
from aethergraph.execution.worker.running import NodeRunner
from aethergraph.execution.worker.started import StartedNotices

Sent = queue.SimpleQueue[tuple[str, str, float]]


@pytest.fixture
def make() -> Iterator[list[StartedNotices]]:
    """Notices made by a test, closed after it (their watcher threads end)."""
    made: list[StartedNotices] = []
    yield made
    for notices in made:
        notices.close()


def _notices(made: list[StartedNotices], after: float) -> tuple[StartedNotices, Sent]:
    sent: Sent = queue.SimpleQueue()
    notices = StartedNotices(lambda *notice: sent.put(notice), after=after, tick=0.01)
    made.append(notices)
    return notices, sent


def _nothing_more(sent: Sent) -> bool:
    """No further notice within a few watcher ticks."""
    try:
        sent.get(timeout=0.1)
    except queue.Empty:
        return True
    return False


def test_a_node_still_running_after_the_delay_is_reported_once(
    make: list[StartedNotices],
) -> None:
    notices, sent = _notices(make, after=0.05)
    began = time.time()
    notices.begin("client-1", "task-a")
    client, outcome_id, at = sent.get(timeout=10)
    assert (client, outcome_id) == ("client-1", "task-a")
    assert began <= at <= time.time()
    assert time.time() - at >= 0.05  # not before the delay
    assert _nothing_more(sent)  # once, though it is still running
    notices.end("task-a")
    notices.begin("client-1", "task-b")  # the next node: its own notice
    assert sent.get(timeout=10)[1] == "task-b"
    assert _nothing_more(sent)


def test_a_node_that_ends_before_the_delay_is_never_reported(
    make: list[StartedNotices],
) -> None:
    notices, sent = _notices(make, after=0.2)
    notices.begin("c", "quick")
    notices.end("quick")
    notices.begin("c", "slow")  # due later than "quick" would have been: it is the first sent
    assert sent.get(timeout=10)[1] == "slow"
    assert _nothing_more(sent)


def test_a_send_that_fails_is_logged_and_the_next_notice_still_goes(
    make: list[StartedNotices], caplog: pytest.LogCaptureFixture
) -> None:
    sent: queue.SimpleQueue[str] = queue.SimpleQueue()

    def send(client: str, outcome_id: str, at: float) -> None:
        if outcome_id == "bad":
            raise ConnectionError("broker gone")
        sent.put(outcome_id)

    notices = StartedNotices(send, after=0.0, tick=0.01)
    make.append(notices)
    with caplog.at_level(logging.WARNING, logger="aethergraph.worker"):
        notices.begin("c", "bad")
        notices.begin("c", "good")
        assert sent.get(timeout=10) == "good"
    assert any("node bad is running" in r.getMessage() and r.exc_info for r in caplog.records)


@tool(outputs=["y"])
def wsn_nap(i: int, seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"y": i}


def test_a_packs_nodes_are_reported_one_at_a_time_as_each_runs(
    make: list[StartedNotices],
) -> None:
    """The worker's pack path: sync nodes of one message run one after another, and each is
    reported while it runs (never the next one before the previous has ended)."""
    notices, sent = _notices(make, after=0.02)
    runner = NodeRunner(lambda args, spec: dict(args), 1, notices)
    nodes = [
        {"id": f"pack.{i}", "run_id": "r", "graph_id": "g", "node_id": f"wsn_nap_{i}",
         "args": {"i": i, "seconds": 0.15}}
        for i in range(3)
    ]  # fmt: skip
    finished: list[str] = []
    assert not runner.run_pack(wsn_nap.spec, nodes, lambda done: finished.extend(
        f.task_id for f in done), client="client-9")  # fmt: skip
    assert finished == ["pack.0", "pack.1", "pack.2"]
    reported = [sent.get(timeout=10) for _ in range(3)]
    assert [(c, oid) for c, oid, _ in reported] == [("client-9", f"pack.{i}") for i in range(3)]
    starts = [at for _, _, at in reported]
    assert starts == sorted(starts)
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(starts))  # each began after a nap
    assert _nothing_more(sent)
