"""Resuming a run by replay: each node reuses, adopts or runs, by its durable record.

``run(gf, ..., run_id=ID, resume=True)`` runs the graph body again. Its tool calls get the same
node ids (tool name and call order) and, with the same arguments, the same identity
(``run_record.node_ident``) as in the run being resumed. Before a node of a resumed run is
published, its entry in the record decides (Temporal's replay, on our graph):

* **done** (an outcome with the same identity): the node settles at once with the stored
  outputs, ``reused="resumed"`` — "resume a failed run from where it failed";
* **sent** (its message is out, from a client that may be dead — a kernel restart): the node is
  *adopted*. This client takes over the old client's side of that message: it awaits the
  outcome id in its table, pops the old client's result list too, and keeps the old client's
  lease alive so that workers still run its queued messages. The message is then watched like
  one of its own: a worker that dies holding it, a lost message, a handback — all recovered as
  usual. Its node runs once, not twice;
* **failed**, another identity (the body or an argument changed), or no entry: it runs.

Only a node's first attempt consults the record, once: a retry is a new attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from aethergraph import codec
from aethergraph.accepted_types import signature_types
from aethergraph.execution.base import DoneCallback, NodeFailure, NodeJob, NodeOutcome
from aethergraph.execution.celery.follow import Follower
from aethergraph.execution.celery.inflight import InFlight, Sent
from aethergraph.execution.celery.run_record import RunRecords, node_ident

log = logging.getLogger("aethergraph")

Submit = Callable[[Sequence[NodeJob], DoneCallback], None]
Adopt = Callable[[str], None]  # a client id whose result list and lease this client takes over


class Resumption:
    """One resumed run: its record's node entries, loaded once, each used at most once."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.loaded: asyncio.Future[dict[str, dict[str, Any]]] | None = None
        self.counts = {"resumed": 0, "adopted": 0, "ran": 0}


class Resumer:
    """Routes the nodes of resumed runs: reuse, adopt or dispatch (see the module doc)."""

    def __init__(
        self,
        *,
        records: RunRecords,
        table: InFlight,
        follower: Follower,
        dispatch: Submit,
        adopt: Adopt,
        client_id: str,
    ) -> None:
        self._records = records
        self._table = table
        self._follower = follower
        self._dispatch = dispatch
        self._adopt = adopt
        self._client_id = client_id
        self.runs: dict[str, Resumption] = {}
        self._messages: dict[str, Sent] = {}  # adopted messages by task id (packs share one)

    def begin(self, run_id: str) -> Resumption:
        resumption = self.runs[run_id] = Resumption(run_id)
        return resumption

    def end(self, run_id: str) -> Resumption | None:
        resumption = self.runs.pop(run_id, None)
        if not self.runs:
            self._messages.clear()
        return resumption

    async def route(
        self, client: aioredis.Redis, jobs: Sequence[NodeJob], on_done: DoneCallback
    ) -> None:
        """Settle, adopt or dispatch ``jobs`` (of a resumed run). A record that cannot be
        read (the broker is down) is logged and the rest of the nodes simply run."""
        to_dispatch: list[NodeJob] = []
        pending = list(jobs)
        try:
            while pending:
                job = pending[0]
                await self._route_one(client, job, on_done, to_dispatch)
                pending.pop(0)
        except Exception:
            log.exception(
                "resuming run %s: could not read its record; running its nodes", jobs[0].run_id
            )
            to_dispatch.extend(pending)
        if to_dispatch:
            self._dispatch(to_dispatch, on_done)

    async def _route_one(
        self,
        client: aioredis.Redis,
        job: NodeJob,
        on_done: DoneCallback,
        to_dispatch: list[NodeJob],
    ) -> None:
        resumption = self.runs.get(job.run_id)
        if resumption is None or job.attempt != 1:
            to_dispatch.append(job)
            return
        if resumption.loaded is None:
            resumption.loaded = asyncio.ensure_future(self._records.load_nodes(client, job.run_id))
        entries = await resumption.loaded
        entry = entries.pop(job.node_id, None)
        if entry is None or entry.get("ident") != _ident(job):
            resumption.counts["ran"] += 1
            to_dispatch.append(job)
        elif "sent" in entry:
            await self._take_over(job, on_done, entry)
            resumption.counts["adopted"] += 1
        elif entry.get("ok"):
            on_done(job, _stored_outcome(job, entry))
            resumption.counts["resumed"] += 1
        else:  # it failed: resuming runs it again
            resumption.counts["ran"] += 1
            to_dispatch.append(job)

    async def _take_over(self, job: NodeJob, on_done: DoneCallback, entry: dict[str, Any]) -> None:
        task_id = str(entry["task"])
        message = self._messages.get(task_id)
        if message is None:
            message = self._messages[task_id] = Sent(task_id, str(entry["queue"]))
        await self._follower.subscribe(job.run_id)
        self._table.add(message, ((str(entry["sent"]), job, on_done),))
        client = str(entry.get("client") or "")
        if client and client != self._client_id:
            self._adopt(client)


def _ident(job: NodeJob) -> str | None:
    try:
        encoded = codec.encode(job.args, where=f"node {job.node_id!r} argument")
    except Exception:  # it cannot have been sent before either
        return None
    return node_ident(job.tool.source_digest, job.node_id, encoded)


def _stored_outcome(job: NodeJob, entry: dict[str, Any]) -> NodeOutcome:
    started, finished = entry.get("started_at"), entry.get("finished_at")
    try:
        outputs = codec.decode(entry.get("outputs") or {}, accepted=signature_types(job.tool.fn))
    except Exception as exc:
        failure = NodeFailure(type(exc).__name__, f"stored outputs unreadable: {exc}")
        return NodeOutcome(failure=failure)
    return NodeOutcome(
        outputs,
        started_at=float(started) if isinstance(started, int | float) else None,
        finished_at=float(finished) if isinstance(finished, int | float) else None,
        reused="resumed",
    )
