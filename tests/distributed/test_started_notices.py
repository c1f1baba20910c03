"""Running means running: a worker tells the client when a node's tool begins.

A client sends more nodes than the workers have slots (Celery prefetches beyond them, and the
rest wait in the broker's queue). Those are *sent*, not running: the node's ``running`` event,
its ``started_at`` and :attr:`TaskNode.phase` come from the worker's started notice
(``execution/worker/started.py``), so at no moment do more nodes run than there are slots.
The shared cluster has 2 workers x 2 slots.
"""

from __future__ import annotations

from typing import Any

from celery_tools import d_interval, d_sleep

from aethergraph import NodeEvent, graph_fn, run
from aethergraph.cluster import LocalCluster
from aethergraph.progress import Progress

SLOTS = 4


@graph_fn(name="notice_sleepers", outputs=["ys"])
async def sleepers(n: int, seconds: float) -> Any:
    return {"ys": [d_sleep(i=i, seconds=seconds)["y"] for i in range(n)]}


@graph_fn(name="notice_gated_sleepers", outputs=["ys"])
async def gated_sleepers(n: int, seconds: float) -> Any:
    """``n`` nodes that all wait for one gate node, so that they become ready together (one
    dispatch, packed) however the tracing thread and the runtime loop interleave."""
    gate = d_sleep(i=0, seconds=0.3)
    return {"ys": [d_sleep(i=gate["y"] + i, seconds=seconds)["y"] for i in range(n)]}


@graph_fn(name="notice_async_sleepers", outputs=["n"])
async def async_sleepers(n: int, seconds: float) -> Any:
    return {"n": len([d_interval(seconds=seconds)["start"] for _ in range(n)])}


def _peaks(events: list[tuple[str, str]]) -> tuple[int, int]:
    """The most nodes at once that were sent and unfinished, and that were running."""
    sent: set[str] = set()
    running: set[str] = set()
    peak_sent = peak_running = 0
    for kind, node in events:
        if kind == "started":
            sent.add(node)
        elif kind == "running":
            assert node in sent, f"{node} running before it was sent"
            running.add(node)
        elif kind in ("done", "failed", "retrying", "cancelled"):
            sent.discard(node)
            running.discard(node)
        peak_sent = max(peak_sent, len(sent))
        peak_running = max(peak_running, len(running))
    return peak_sent, peak_running


def _recorder() -> tuple[list[tuple[str, str]], Any]:
    events: list[tuple[str, str]] = []

    def listen(event: Any) -> None:
        if isinstance(event, NodeEvent):
            events.append((event.type, event.node_id))

    return events, listen


def test_nodes_waiting_for_a_slot_are_sent_not_running(cluster: LocalCluster) -> None:
    n = 12
    events, listen = _recorder()
    assert run(sleepers, n=n, seconds=0.5, executor=cluster.executor, on_event=listen) == {
        "ys": list(range(n))
    }
    peak_sent, peak_running = _peaks(events)
    assert peak_sent > SLOTS  # more nodes were sent at once than there are slots ...
    assert 1 <= peak_running <= SLOTS  # ... but never more ran than there are slots
    kinds = [kind for kind, _ in events]
    assert kinds.count("running") == n  # each ran 0.5 s: long enough to be reported
    graph = sleepers.last_graph
    assert graph is not None
    assert all(node.started_at is not None and node.queue_wait is not None for node in graph)
    # 12 nodes, 4 slots, 0.5 s each: the last wave waited about a second for its slot
    assert max(node.queue_wait or 0.0 for node in graph) > 0.5


def test_packed_and_async_nodes_are_reported_as_they_run(cluster: LocalCluster) -> None:
    """32 nodes of one tool ready at once on 4 slots travel two to a message: a pack's sync
    nodes run one after another, so a pack counts one running node, not two."""
    stats = cluster.executor.stats
    before = stats["published"]
    events, listen = _recorder()
    run(gated_sleepers, n=32, seconds=0.25, executor=cluster.executor, on_event=listen)
    # usually packed (the gate, then packs of the 32); the pack path's notices are also
    # checked without Celery in tests/test_worker_started_notices.py
    assert stats["published"] - before <= 33
    peak_sent, peak_running = _peaks(events)
    assert peak_sent > SLOTS
    assert 1 <= peak_running <= SLOTS
    events, listen = _recorder()
    run(async_sleepers, n=8, seconds=0.4, executor=cluster.executor, on_event=listen)
    peak_sent, peak_running = _peaks(events)
    assert 1 <= peak_running <= SLOTS < peak_sent


def test_progress_counts_sent_nodes_as_queued(cluster: LocalCluster) -> None:
    """The progress display's running column is the workers' truth, not the sent count."""
    seen: list[tuple[str, int, int]] = []
    progress = Progress(display="log", reports_running=True)

    def listen(event: Any) -> None:
        progress(event)
        if isinstance(event, NodeEvent):
            totals = progress.snapshot().totals
            seen.append((event.type, totals.running, totals.queued))

    run(sleepers, n=8, seconds=0.5, executor=cluster.executor, on_event=listen)
    assert max(running for _, running, _ in seen) <= SLOTS
    # once all 8 are sent, at most 4 of them run: the others still count as queued
    last_sent = max(i for i, (kind, _, _) in enumerate(seen) if kind == "started")
    _, running, queued = seen[last_sent]
    assert running + queued == 8
    assert queued >= 8 - SLOTS
    assert progress.snapshot().totals.done == 8
