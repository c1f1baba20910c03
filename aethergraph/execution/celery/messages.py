"""Messages: which ready nodes travel together, and what each Celery message carries.

**Packs.** Many ready nodes of one tool (a fan-out) are *packed*: up to ``max_pack`` of them
travel in one Celery message, so Celery's fixed per-message cost (broker round trips, acks,
events, pool hand-off) is paid once per pack. A pack is a unit of *delivery*, not of
parallelism: the worker runs a pack's nodes within the one slot that took the message, never
more of them at once than that slot may run, so packing never multiplies a worker's ``-c``.
Packs are made only when there are at least four per live worker slot, so every slot still gets
work and a small batch is sent node by node; nodes with a timeout are never packed (a timeout
is a per-message limit). Each packed node keeps its own outcome id (``<pack id>.<index>``).

Every message goes into the in-flight table as it is made (``inflight.py``); its envelope is
``wire.task_envelope`` with what ``stamps.py`` writes on it. The dispatcher sends the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aethergraph.execution.base import DoneCallback, NodeJob
from aethergraph.execution.celery.discovery import LiveWorkers
from aethergraph.execution.celery.inflight import InFlight, Sent
from aethergraph.execution.celery.stamps import SentEntries, Stamps
from aethergraph.execution.wire import META, node_kwargs_repr, pack_kwargs_repr, task_envelope
from aethergraph.keys import Keys
from aethergraph.settings import Settings

TIMEOUT_GRACE = 5.0  # Celery's hard limit (and the client's backstop) this long after a timeout
PACKS_PER_SLOT = 4

#: a node ready to go: its job, its callback, its wire arguments, its identity ("" if none)
Encoded = tuple[NodeJob, DoneCallback, dict[str, Any], str]


@dataclass
class Batch:
    """One publish pass: its messages, their nodes' record entries, their envelopes (queue,
    bytes, to the front of the queue?) in the order they are pushed."""

    messages: list[Sent] = field(default_factory=list)
    sent: SentEntries = field(default_factory=dict)
    pushes: list[tuple[str, bytes, bool]] = field(default_factory=list)


def node_meta(job: NodeJob) -> dict[str, Any]:
    return {
        "run_id": job.run_id,
        "graph_id": job.graph_id,
        "node_id": job.node_id,
        "attempt": job.attempt,
        # the client retries a failure while attempt <= retries: the worker tells Celery (and
        # so Flower and the metrics) a retry from a final failure with the client's own policy
        "retries": job.tool.policy.retries,
        "timeout": job.timeout,
    }


def take_marks(front: set[str], jobs: Sequence[NodeJob]) -> bool:
    """Does a message of ``jobs`` go to the front of its queue? (forgets their marks)"""
    if not front:
        return False
    marked = [job.key for job in jobs if job.key in front]
    front.difference_update(marked)
    return bool(marked)


class MessageMaker:
    """Turns a batch of encoded nodes into Celery messages (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        keys: Keys,
        table: InFlight,
        workers: LiveWorkers,
        stamps: Stamps,
        front: set[str],
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._table = table
        self._workers = workers
        self._stamps = stamps
        self._front = front  # keys of nodes sent again: they jump the queue

    def build(self, encoded: list[Encoded], unsent: set[str]) -> Batch:
        """The batch's messages: packs where they pay, single nodes else. Each node still
        ``unsent`` goes into one (and leaves ``unsent``); the others were cancelled."""
        batch = Batch()
        messages, sent, pushes = batch.messages, batch.sent, batch.pushes
        packable: dict[tuple[str, str], list[Encoded]] = {}
        for entry in encoded:
            job = entry[0]
            if job.key not in unsent:
                continue
            unsent.discard(job.key)
            queue = self._keys.tool_queue(job.tool.policy.queue)
            if job.timeout is None:
                packable.setdefault((job.tool.name, queue), []).append(entry)
            else:
                self._add_task(messages, entry, queue, sent, pushes)
        for (tool_name, queue), entries in packable.items():
            size = self._pack_size(queue, len(entries))
            if size < 2:
                for entry in entries:
                    self._add_task(messages, entry, queue, sent, pushes)
                continue
            for start in range(0, len(entries), size):
                pack = entries[start : start + size]
                self._add_pack(messages, tool_name, pack, queue, sent, pushes)
        return batch

    def _add_task(
        self,
        messages: list[Sent],
        entry: Encoded,
        queue: str,
        sent: SentEntries,
        pushes: list[tuple[str, bytes, bool]],
    ) -> None:
        """One node, one Celery message (with the tool's time limits)."""
        job, on_done, kwargs, ident = entry
        task_id = uuid.uuid4().hex
        task_name = self._stamps.task_name(job.tool)
        kwargs[META] = meta = self._stamps.message_meta(job.tool, task_name)
        meta.update(node_meta(job))
        if ident:  # in the run's record, beside the message (not in it)
            self._stamps.sent(sent, task_id, queue, job.tool, [(job, task_id, ident)])
        timeout = job.timeout
        envelope = task_envelope(
            task_id=task_id,
            task_name=task_name,
            tool_name=job.tool.name,
            kwargs=kwargs,
            queue=queue,
            time_limit=timeout + TIMEOUT_GRACE if timeout else None,
            # async tools time themselves out; Celery's soft limit is the fallback
            soft_time_limit=timeout + 1 if timeout and job.tool.is_async else timeout,
            kwargs_repr=node_kwargs_repr(kwargs[META], kwargs),
            delivery_tag=task_id,
        )
        pushes.append((queue, envelope, take_marks(self._front, [job])))
        message = Sent(task_id, queue)
        self._table.add(message, ((task_id, job, on_done),))
        messages.append(message)

    def _add_pack(
        self,
        messages: list[Sent],
        tool_name: str,
        entries: list[Encoded],
        queue: str,
        sent: SentEntries,
        pushes: list[tuple[str, bytes, bool]],
    ) -> None:
        """Several nodes of one tool, one Celery message; each node keeps its own outcome id
        (``<pack id>.<index>``), so results, retries and events stay per node."""
        pack_id = uuid.uuid4().hex
        message = Sent(pack_id, queue)
        nodes = []
        carried = []
        recorded: list[tuple[NodeJob, str, str]] = []
        for index, (job, on_done, kwargs, ident) in enumerate(entries):
            node_key = f"{pack_id}.{index}"
            node = node_meta(job)
            node["id"] = node_key
            node["args"] = kwargs
            if ident:
                recorded.append((job, node_key, ident))
            nodes.append(node)
            carried.append((node_key, job, on_done))
        self._table.add(message, carried)
        tool = entries[0][0].tool
        if recorded:
            self._stamps.sent(sent, pack_id, queue, tool, recorded)
        task_name = self._stamps.task_name(tool)
        meta = {**self._stamps.message_meta(tool, task_name), "pack": nodes}
        envelope = task_envelope(
            task_id=pack_id,
            task_name=task_name,
            tool_name=tool_name,
            kwargs={META: meta},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr=pack_kwargs_repr(nodes),
            delivery_tag=pack_id,
        )
        pushes.append((queue, envelope, take_marks(self._front, [e[0] for e in entries])))
        messages.append(message)

    def _pack_size(self, queue: str, ready: int) -> int:
        """Nodes per message for ``ready`` nodes of one tool: at least 4 messages per slot."""
        if self._settings.max_pack < 2:
            return 1
        slots = max(1, self._workers.slots.get(queue, 1))
        return min(self._settings.max_pack, ready // (PACKS_PER_SLOT * slots))
