"""``aethergraph.attach(run_id)``: watch and await a run started elsewhere, by its record.

Any process that reaches the broker can look at a run another process started — a notebook
watching a sweep a script submitted, a second kernel after the first was restarted — like Ray's
``ray.get`` after reconnecting. It reads the run's durable record (``run_record.py``), so it
needs no graph code and changes nothing: the run goes on in the client that started it.

If that client is gone (the run shows as ``abandoned``: its lease expired), nobody is driving
the run any more and waiting would never end: :meth:`AttachedRun.result` says so, and how to
continue it — replay it with ``run(gf, run_id=ID, resume=True)``, which reuses what finished and
adopts what is still on the workers.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Generator
from typing import Any

import orjson

from aethergraph import codec
from aethergraph.errors import ConfigurationError, RunCancelledError, RunFailedError
from aethergraph.execution.celery.executor import CeleryExecutor
from aethergraph.execution.celery.run_record import entry_state, read_run, run_state
from aethergraph.graph.task_graph import NodeStatus, TaskGraph, TaskNode
from aethergraph.keys import Keys
from aethergraph.redis_clients import sync_client
from aethergraph.settings import Settings, get_settings

POLL = 0.5  # seconds between reads of the record while waiting
FINAL = frozenset({"done", "failed", "cancelled", "abandoned"})
_NODE_STATUS = {
    "sent": NodeStatus.RUNNING,  # not known to have begun (no started_at): drawn "queued"
    "done": NodeStatus.DONE,
    "failed": NodeStatus.FAILED,
    "skipped": NodeStatus.PENDING,  # dropped by a worker (its client was gone): it runs again
}


def _settings_of(where: Any) -> Settings:
    if hasattr(where, "__aethergraph_executor__"):
        where = where.__aethergraph_executor__()
    if isinstance(where, CeleryExecutor):
        return where.settings
    if where is None:
        settings = get_settings()
        if settings.broker_url:
            return settings
        raise ConfigurationError(
            "attach() needs the broker the run is on: pass attach(run_id, cluster) or set "
            "AETHERGRAPH_BROKER_URL=redis://host:6379/0 (and AETHERGRAPH_NAMESPACE)"
        )
    raise ConfigurationError(
        f"attach(run_id, where): where must be a cluster, a CeleryExecutor or None, got {where!r}"
    )


class AttachedRun:
    """A run read from its record: ``status``, ``counts``, ``graph``, ``result()``, ``await``."""

    def __init__(self, run_id: str, settings: Settings) -> None:
        self.run_id = run_id
        self._keys = Keys(settings.namespace)
        self._client = sync_client(settings.broker_url or "")
        self._record: dict[str, Any] = {}
        if not self.refresh():
            self._client.close()
            raise ConfigurationError(
                f"no record of run {run_id!r} in namespace {settings.namespace!r} (records are "
                "kept AETHERGRAPH_RUN_TTL seconds; 'aethergraph runs' lists the recent ones)"
            )

    def refresh(self) -> bool:
        """Read the record again; False if there is none (any more)."""
        record = read_run(self._client, self._keys, self.run_id)
        if record is None:
            return False
        self._record = record
        return True

    @property
    def info(self) -> dict[str, str]:
        return dict(self._record.get("info", {}))

    @property
    def status(self) -> str:
        """running, done, failed, cancelled — or abandoned: its client is gone."""
        return run_state(self._client, self._keys, self.info)

    @property
    def counts(self) -> dict[str, int]:
        """Nodes by state in the record: ``sent`` (queued or running), ``done``, ``failed``."""
        counts: dict[str, int] = {}
        for entry in self._record.get("nodes", {}).values():
            state = entry_state(entry)
            counts[state] = counts.get(state, 0) + 1
        return counts

    @property
    def graph(self) -> TaskGraph:
        """The nodes the record knows, by status (no edges: the record keeps none)."""
        graph = TaskGraph(self.info.get("graph", "?"), run_id=self.run_id)
        for node_id, entry in sorted(self._record.get("nodes", {}).items()):
            tool = str(entry.get("tool") or node_id.rsplit("_", 1)[0])
            status = _NODE_STATUS[entry_state(entry)]
            graph.add_node(TaskNode(node_id, tool, status=status))
        return graph

    def done(self) -> bool:
        self.refresh()
        return self.status in FINAL

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait (reading the record every half second) and return the run's outputs; raise
        its failure, its cancellation, or, if its client is gone, how to resume it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.run_id} did not finish within {timeout}s")
            time.sleep(POLL)
        return self._outcome()

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self._wait().__await__()

    async def _wait(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.result)  # the reads block: off the event loop

    def _outcome(self) -> dict[str, Any]:
        info, status = self.info, self.status
        if status == "done":
            result = codec.decode(orjson.loads(info.get("result") or "null"))
            return dict(result) if isinstance(result, dict) else {"result": result}
        if status == "cancelled":
            raise RunCancelledError(self.run_id, info.get("error") or "cancelled")
        if status == "abandoned":
            raise RunFailedError(
                f"run {self.run_id} ({info.get('graph')}) was abandoned: the client running it "
                f"({info.get('origin')}) is gone. Continue it by replaying it: "
                f"run(<graph>, <same inputs>, run_id={self.run_id!r}, resume=True)"
            )
        raise RunFailedError(f"run {self.run_id} failed: {info.get('error') or 'unknown error'}")

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"<AttachedRun {self.run_id} {self.info.get('graph')} {self.status} {counts}>"

    def _repr_html_(self) -> str:
        self.refresh()
        counts = " · ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        head = (
            f"<div><b>run {html.escape(self.run_id)}</b> "
            f"({html.escape(self.info.get('graph', ''))}): {html.escape(self.status)}"
            f" — {html.escape(counts)}</div>"
        )
        return head + self.graph._repr_html_()


def attach(run_id: str, where: Any = None) -> AttachedRun:
    """A handle on run ``run_id``, started by any client of the broker: ``where`` is the
    cluster or Celery executor it runs on (default: the configured broker)."""
    if not isinstance(run_id, str) or not run_id:
        raise ConfigurationError(f"attach() needs a run id (a non-empty string), got {run_id!r}")
    return AttachedRun(run_id, _settings_of(where))
