"""What a message says besides its nodes' arguments: its task, its sender, its tool's code, and
where its nodes are recorded.

The dispatcher decides *which* nodes go in which message; this module decides what is written
on the envelope and beside it:

* the **task**: the tool's own, or ``aethergraph.shipped`` for a notebook tool when this client
  ships code (``execution/shipping.py``);
* the **sender**: client id, send time and lease (a worker skips nodes of a gone client);
* the **code**: the shipped code's digest, or the tool's source digest that a worker compares
  with its own (a stale worker fails the node with ``ToolCodeError``);
* the **record**: each node's identity and its ``sent`` entry in its run's durable record
  (``run_record.py``), and the record's TTL for the worker that writes the outcome.
"""

from __future__ import annotations

import time
from typing import Any

from aethergraph.execution.base import NodeJob
from aethergraph.execution.celery.run_record import RunRecords, message_entry, node_ident
from aethergraph.execution.shipping import SHIPPED_TASK, CodeShipper
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.keys import Keys

#: a batch's record entries: run id -> field (a message's) -> its JSON
SentEntries = dict[str, dict[str, bytes]]


def message_meta(client_id: str, lease: float) -> dict[str, Any]:
    """Who sent a message, when, and how long the sender's lease lasts: a worker skips a
    message whose client's lease is gone (``execution/worker/leases.py``)."""
    return {"client": client_id, "sent": time.time(), "lease": lease}


class Stamps:
    """The envelope-side facts of one client's messages (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Keys,
        client_id: str,
        lease: float,
        shipper: CodeShipper | None,
        records: RunRecords | None,
    ) -> None:
        self._keys = keys
        self._client_id = client_id
        self._lease = lease
        #: ships notebook tools' code (None: this client does not, AETHERGRAPH_SHIP_CODE off)
        self.shipper = shipper
        #: the runs' durable records (None: AETHERGRAPH_RUN_TTL=0)
        self.records = records

    def task_name(self, tool: ToolSpec) -> str:
        """The Celery task of a tool's messages."""
        if self.shipper is not None and tool.in_main:
            return SHIPPED_TASK
        return tool.name

    def message_meta(self, tool: ToolSpec, task_name: str) -> dict[str, Any]:
        meta = message_meta(self._client_id, self._lease)
        if task_name == SHIPPED_TASK:
            assert self.shipper is not None
            meta["code"] = self.shipper.digest(tool)
        else:
            meta["src"] = tool.source_digest
        if self.records is not None:  # workers write outcomes into the record, this long
            meta["rec"] = self.records.ttl
        return meta

    def ident(self, job: NodeJob, encoded_args: Any) -> str:
        """The node's identity in its run's record ("" without records)."""
        if self.records is None:
            return ""
        return node_ident(job.tool.source_digest, job.node_id, encoded_args)

    def sent(
        self,
        entries: SentEntries,
        task_id: str,
        queue: str,
        tool: ToolSpec,
        nodes: list[tuple[NodeJob, str, str]],
    ) -> None:
        """Add a message's record entry — ``(job, outcome id, identity)`` of each node it
        carries — to the batch's entries, one field per run it carries nodes of."""
        by_run: dict[str, list[tuple[str, str, str, int]]] = {}
        for job, outcome_id, ident in nodes:
            by_run.setdefault(job.run_id, []).append((job.node_id, outcome_id, ident, job.attempt))
        for run_id, carried in by_run.items():
            field, entry = message_entry(
                task_id=task_id, queue=queue, client=self._client_id, tool=tool.name, nodes=carried
            )
            entries.setdefault(run_id, {})[field] = entry

    def queue_before_messages(
        self, pipe: Any, tools: list[ToolSpec], entries: SentEntries
    ) -> list[str]:
        """Queue on ``pipe``, ahead of the messages, the code of the batch's notebook tools
        and the nodes' record entries (one connection, in order: a worker never sees a message
        before its code, and its outcome overwrites its ``sent`` entry, never the reverse).
        Returns the code digests written (written again if the publish fails)."""
        if self.records is not None:
            for run_id, nodes in entries.items():
                self.records.queue_sent(pipe, run_id, nodes)
        shipper = self.shipper
        if shipper is None:
            return []
        digests = {shipper.digest(tool) for tool in tools if self.task_name(tool) == SHIPPED_TASK}
        due = shipper.uploads(digests)
        for digest, blob in due:
            pipe.set(self._keys.shipped_code(digest), blob, ex=int(shipper.ttl))
        return [digest for digest, _ in due]

    def publish_failed(self, written: list[str]) -> None:
        if self.shipper is not None:
            self.shipper.forget_written(written)
