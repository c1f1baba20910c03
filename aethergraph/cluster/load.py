"""What a batch-system cluster reads to size itself and to explain a failure: the demand on its
namespace (queued and held messages, nodes in flight of live runs), the tail of its jobs' logs,
and closing its executor without letting a failure there keep the jobs running."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from aethergraph.execution.base import Executor
from aethergraph.execution.celery.status import read_runs, read_workers
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph")


def slots_wanted(client: redis.Redis, keys: Keys, queues: Sequence[str]) -> int:
    """Pool slots wanted now on ``queues``: the larger of (messages waiting in those queues +
    messages live workers hold) and (nodes in flight of the namespace's live runs, which counts
    nodes that wait in their client for a worker serving their tool)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(keys.tool_queue(queue))
    queued = sum(int(n) for n in pipe.execute())
    held = sum(len(worker["held"]) for worker in read_workers(client, keys))
    in_flight = 0
    for entry in read_runs(client, keys, time.time()):  # what `aethergraph status` reads
        try:  # sent nodes: begun on a worker (running) or not yet (queued)
            counts = entry["counts"]
            in_flight += int(counts.get("running", 0)) + int(counts.get("queued", 0))
        except (TypeError, ValueError, AttributeError, KeyError):
            continue  # a foreign entry
    return max(queued + held, in_flight)


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
