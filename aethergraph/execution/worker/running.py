"""Running nodes on a worker: one node per Celery message, or a pack of nodes of one tool.

A worker runs at most as many nodes at once as it has slots (``-c``), whether they arrive as
single messages or packed: a user who starts a pool with ``-c 1`` for a GPU- or memory-bound tool
or a rate-limited API gets one node at a time. Packing only saves messages. So within one message
(one slot) sync nodes run one after another, and so do async nodes — unless the worker opts in
to running up to ``async_concurrency`` async nodes of one message concurrently on its runtime
loop (``aethergraph worker --async-concurrency N`` / ``AETHERGRAPH_ASYNC_CONCURRENCY``), which is
what I/O-bound async tools want.

Every outcome carries ``started_at`` / ``finished_at``, the wall clock just around the tool call
in this process. Outcomes of a pack are pushed as they come, in batches at least every
``PACK_FLUSH`` seconds (one pipelined push per batch), so dependents of its early nodes need not
wait for the whole pack.

Celery's soft time limit is how a sync tool's timeout fires on prefork, and how the client's
revoke (cancellation) reaches a running message: it raises ``SoftTimeLimitExceeded`` wherever
the worker's main thread is. While async nodes run, the wait is interrupted and their coroutines
are cancelled so that their ``finally`` blocks run.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from aethergraph import runtime_loop
from aethergraph.errors import NodeTimeoutError
from aethergraph.execution.base import NodeJob, NodeOutcome, failure_from
from aethergraph.execution.invoke import invoke_async, invoke_sync
from aethergraph.execution.worker.outcomes import Finished, failed_now, failure_for
from aethergraph.execution.worker.started import StartedNotices
from aethergraph.graph.tool_spec import ToolSpec

PACK_FLUSH = 0.02  # seconds between outcome pushes while a pack runs
_CANCEL_WAIT = 10.0  # seconds to let cancelled coroutines finish their ``finally`` blocks

#: pushes a batch of finished attempts to the client (one round trip)
Push = Callable[[Sequence[Finished]], None]
_Batch = list[tuple[int, NodeOutcome]]
#: ``track(index, running)``: the job at ``index`` begins (True) or ends (False) its tool
_Track = Callable[[int, bool], None]


def make_job(spec: ToolSpec, meta: dict[str, Any], args: dict[str, Any]) -> NodeJob:
    return NodeJob(
        str(meta["run_id"]),
        str(meta["graph_id"]),
        str(meta["node_id"]),
        spec,
        args,
        int(meta.get("attempt", 1)),
        meta.get("timeout"),
    )


def _stamped(outcome: NodeOutcome, started: float) -> NodeOutcome:
    outcome.started_at = started
    outcome.finished_at = time.time()
    return outcome


def _run_sync(job: NodeJob, track: _Track | None = None, index: int = 0) -> NodeOutcome:
    """Run a sync job here, timed; ``track(index, ...)`` around the tool call, if given."""
    started = time.time()
    if track is None:
        return _stamped(invoke_sync(job), started)
    track(index, True)
    try:
        return _stamped(invoke_sync(job), started)
    finally:
        track(index, False)


def _interrupted(outcome: NodeOutcome) -> bool:
    """Did Celery's soft-limit signal end this attempt (a timeout or a revoke)?"""
    failure = outcome.failure
    return failure is not None and failure.exc_type.endswith("SoftTimeLimitExceeded")


class _Handoff:
    """Outcomes produced on the runtime loop, handed to the worker thread in batches.

    A batch leaves at most ``PACK_FLUSH`` seconds after its first outcome (one thread hand-off
    per batch, not per node); ``None`` says the last outcome has been handed off.
    """

    def __init__(self) -> None:
        self.batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._batch: _Batch = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, index: int, outcome: NodeOutcome) -> None:
        self._batch.append((index, outcome))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(PACK_FLUSH, self._hand)

    def _hand(self) -> None:
        self._timer = None
        if self._batch:
            self.batches.put(self._batch)
            self._batch = []

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._hand()
        self.batches.put(None)


async def _run_async_jobs(
    jobs: Sequence[NodeJob], limit: int, handoff: _Handoff, track: _Track | None = None
) -> None:
    """Run async jobs, at most ``limit`` at once, in order; each outcome goes to ``handoff``."""
    pending: Iterator[tuple[int, NodeJob]] = iter(enumerate(jobs))

    async def lane() -> None:
        for index, job in pending:  # lanes share the iterator: each job runs once
            started = time.time()
            if track is not None:
                track(index, True)
            try:
                outcome = await invoke_async(job)
            finally:
                if track is not None:
                    track(index, False)
            handoff.add(index, _stamped(outcome, started))

    try:
        await asyncio.gather(*(lane() for _ in range(max(1, min(limit, len(jobs))))))
    finally:
        handoff.close()


class NodeRunner:
    """Runs the nodes of one message in the calling (Celery worker) thread."""

    def __init__(
        self,
        decode: Callable[[dict[str, Any], ToolSpec], dict[str, Any]],
        async_concurrency: int,
        notices: StartedNotices | None = None,
    ):
        self._decode = decode
        #: async nodes of one message that may run at once (1: one after another)
        self.async_concurrency = max(1, async_concurrency)
        #: tells clients which nodes are running (``started.py``); None: nobody is told
        self.notices = notices

    def _tracker(self, client: str, ids: Sequence[str]) -> _Track | None:
        """``track(index, running)`` for the nodes ``ids`` of ``client``'s message, or None."""
        notices = self.notices
        if notices is None or not client:
            return None

        def track(index: int, running: bool) -> None:
            if running:
                notices.begin(client, ids[index])
            else:
                notices.end(ids[index])

        return track

    def run_one(
        self,
        spec: ToolSpec,
        meta: dict[str, Any],
        args: dict[str, Any],
        outcome_id: str = "",
    ) -> NodeOutcome:
        """Run one node (its own message); a soft-limit signal becomes a timeout failure.
        ``outcome_id``: its task id, for the started notice (a tool with a timeout had its
        notice already)."""
        job = make_job(spec, meta, args)
        track = None if job.timeout else self._tracker(str(meta.get("client", "")), [outcome_id])
        started = time.time()
        try:
            if spec.is_async:
                outcomes: list[NodeOutcome] = []
                self._run_async([job], lambda done: outcomes.extend(o for _, o in done), track)
                outcome = outcomes[0]
            else:
                outcome = _run_sync(job, track)
        except SoftTimeLimitExceeded:
            # The soft-limit signal reached this process while it waited for an async tool: its
            # timeout, or the client revoking the task (cancellation; the outcome is ignored).
            outcome = _stamped(NodeOutcome(failure=failure_from(SoftTimeLimitExceeded())), started)
        if _interrupted(outcome) and job.timeout:
            # Celery's soft limit is how a sync tool's timeout fires on prefork: say so (on a
            # node without a timeout it can only be the client's revoke: left as it is)
            timeout = NodeTimeoutError(f"tool {spec.name!r} exceeded its timeout of {job.timeout}s")
            outcome = NodeOutcome(
                failure=failure_from(timeout),
                started_at=outcome.started_at,
                finished_at=outcome.finished_at,
            )
        return outcome

    def run_pack(
        self,
        spec: ToolSpec,
        nodes: list[dict[str, Any]],
        push: Push,
        go_on: Callable[[], bool] = lambda: True,
        client: str = "",
    ) -> bool:
        """Run a pack of nodes of one tool, pushing outcomes as they come; True if revoked.

        A soft-limit signal here can only be the client revoking the pack (packed nodes have no
        timeout): the pack stops; what finished is still pushed. ``go_on`` is asked before each
        sync node: False (the client is gone) stops the pack. ``client``: whom to tell which
        node is running (``started.py``).
        """
        done: list[Finished] = []
        jobs: list[tuple[dict[str, Any], NodeJob]] = []
        for node in nodes:
            try:
                jobs.append(
                    (node, make_job(spec, node, self._decode(node.get("args") or {}, spec)))
                )
            except Exception as exc:
                done.append(Finished(str(node["id"]), node, failed_now(failure_for(exc))))
        track = self._tracker(client, [str(node["id"]) for node, _ in jobs])
        try:
            if spec.is_async:

                def flush(batch: _Batch) -> None:
                    finished = [Finished(str(jobs[i][0]["id"]), jobs[i][0], o) for i, o in batch]
                    push([*done, *finished])
                    done.clear()

                self._run_async([job for _, job in jobs], flush, track)
                return False
            flushed = time.monotonic()
            for index, (node, job) in enumerate(jobs):
                if not go_on():
                    return False
                outcome = _run_sync(job, track, index)
                done.append(Finished(str(node["id"]), node, outcome))
                if _interrupted(outcome):
                    return True
                if time.monotonic() - flushed >= PACK_FLUSH:
                    push(done)
                    done, flushed = [], time.monotonic()
        except SoftTimeLimitExceeded:
            return True
        finally:
            if done:
                push(done)
        return False

    def _run_async(
        self,
        jobs: Sequence[NodeJob],
        on_batch: Callable[[_Batch], None],
        track: _Track | None = None,
    ) -> None:
        """Run async jobs on the runtime loop; hand each batch of outcomes to ``on_batch``.

        If the soft-limit signal interrupts the wait, the coroutines are cancelled (their
        ``finally`` blocks run), outcomes already handed off still reach ``on_batch``, and the
        signal's exception goes on to the caller.
        """
        handoff = _Handoff()
        future = runtime_loop.submit(_run_async_jobs(jobs, self.async_concurrency, handoff, track))
        try:
            while (batch := handoff.batches.get()) is not None:
                on_batch(batch)
        except SoftTimeLimitExceeded:
            future.cancel()
            deadline = time.monotonic() + _CANCEL_WAIT
            try:  # until the cancelled coroutines are through their ``finally`` blocks
                while batch := handoff.batches.get(timeout=max(0.0, deadline - time.monotonic())):
                    on_batch(batch)
            except queue.Empty:
                pass
            raise
        except BaseException:  # e.g. the push failed: the nodes of this message stop too
            future.cancel()
            raise
        future.result()  # an internal error (never a tool's: invoke_async catches those)
