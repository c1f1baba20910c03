"""What a batch-system cluster reads to size itself and to explain a failure: the demand on its
namespace (queued and held messages, nodes in flight of live runs), the tail of its jobs' logs,
and closing its executor without letting a failure there keep the jobs running."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from aethergraph.execution.base import Executor
from aethergraph.execution.celery.discovery import read_workers_sync
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph")

LIVE_RUN_FRESH = 10.0  # seconds: an older live-run entry is a dead client's (live_runs.py)


def slots_wanted(client: redis.Redis, keys: Keys, queues: Sequence[str]) -> int:
    """Pool slots wanted now on ``queues``: the larger of (messages waiting in those queues +
    messages live workers hold) and (nodes in flight of the namespace's live runs, which counts
    nodes that wait in their client for a worker serving their tool)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(keys.tool_queue(queue))
    pipe.hgetall(keys.live_runs())
    *lengths, runs = pipe.execute()
    held = 0
    for worker in read_workers_sync(client, keys):
        try:
            held += len(json.loads(worker.get("held") or "[]"))
        except ValueError:
            continue  # a half-written hash
    in_flight = 0
    now = time.time()
    for raw in runs.values():
        try:
            entry = json.loads(raw)
            if now - float(entry.get("updated", 0)) < LIVE_RUN_FRESH:
                in_flight += int(entry.get("counts", {}).get("running", 0))
        except (ValueError, TypeError, AttributeError):
            continue
    return max(sum(int(n) for n in lengths) + held, in_flight)


def job_log_tail(directory: Path, limit: int = 3000) -> str:
    """The end of the newest job log in ``directory``, to say why workers did not come."""
    logs = sorted(directory.glob("*.out"), key=lambda p: p.stat().st_mtime) if directory else []
    if not logs:
        return f"no job log in {directory} yet"
    text = logs[-1].read_text(errors="replace")
    return f"last lines of {logs[-1]}:\n{text[-limit:]}"


def close_executor_quietly(executor: Executor | None) -> None:
    """Close a cluster's executor (on the runtime loop); a failure is logged, not raised."""
    if executor is None:
        return
    from aethergraph import runtime_loop
    from aethergraph.execution.select import close_executor

    try:
        runtime_loop.run_sync(close_executor(executor), timeout=30)
    except Exception:  # the jobs are cancelled either way; say what failed
        log.warning("closing the cluster's executor failed", exc_info=True)
