"""A sent node's phase with an executor that reports running (the scheduler's side of started
notices): queued until the executor reports it begun, queued again when the executor sends it
again (its worker died), and its events say so. The executor here holds the jobs it is given
and reports on them when the test says, on the runtime loop, as the Celery executor does."""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from typing import Any

import pytest

from aethergraph import NodeEvent, graph_fn, runtime_loop, submit, tool
from aethergraph.execution.base import DoneCallback, Executor, NodeJob, NodeOutcome, tell_running


@tool(outputs=["y"])
def rp_step(x: int) -> dict[str, Any]:
    return {"y": x}


@graph_fn(name="rp_one", outputs=["y"])
async def rp_one() -> Any:
    return {"y": rp_step(x=7)["y"]}


class HoldingExecutor(Executor):
    """Keeps submitted jobs; the test reports them running, sent again, or done."""

    name = "holding"
    reports_running = True

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[NodeJob, DoneCallback]] = queue.SimpleQueue()

    def submit_many(self, jobs: Sequence[NodeJob], on_done: DoneCallback) -> None:
        for job in jobs:
            self.jobs.put((job, on_done))

    def cancel(self, job: NodeJob) -> None:
        pass


def test_a_sent_node_is_queued_until_reported_running_and_again_when_sent_again() -> None:
    executor = HoldingExecutor()
    seen: queue.SimpleQueue[tuple[str, str, float | None]] = queue.SimpleQueue()

    def listen(event: Any) -> None:
        if isinstance(event, NodeEvent) and event.type != "added":
            node = rp_one.last_graph[event.node_id] if rp_one.last_graph else None
            seen.put((event.type, node.phase if node else "?", node.started_at if node else None))

    handle = submit(rp_one, executor=executor, on_event=listen)
    job, on_done = executor.jobs.get(timeout=10)
    assert seen.get(timeout=10) == ("started", "queued", None)  # sent: not running yet

    def on_loop(at: float | None) -> None:
        runtime_loop.get_loop().call_soon_threadsafe(tell_running, job, at)

    on_loop(1000.0)
    assert seen.get(timeout=10) == ("running", "running", 1000.0)
    on_loop(1001.0)  # a second notice for the same attempt changes nothing
    on_loop(None)  # its worker died: the executor sends it again
    assert seen.get(timeout=10) == ("started", "queued", None)
    on_loop(1002.0)
    assert seen.get(timeout=10) == ("running", "running", 1002.0)
    on_done(job, NodeOutcome({"y": 7}, started_at=1002.0, finished_at=1003.0))
    assert handle.result(10) == {"y": 7}
    kind, phase, started = seen.get(timeout=10)
    assert (kind, phase, started) == ("done", "done", 1002.0)
    assert seen.empty()


def test_a_failing_running_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    job = NodeJob("r", "g", "n_0", rp_step.spec, {"x": 1})

    def hook(job: NodeJob, at: float | None) -> None:
        raise RuntimeError("listener bug")

    job.on_running = hook
    with caplog.at_level(logging.ERROR, logger="aethergraph"):
        tell_running(job, 1.0)  # returns: the executor's loop goes on
    (record,) = [r for r in caplog.records if "marking node r:n_0:1 running" in r.getMessage()]
    assert record.exc_info is not None
    assert "listener bug" in str(record.exc_info[1])
