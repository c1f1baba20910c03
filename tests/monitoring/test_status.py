"""``aethergraph status``: live workers, queue lengths and runs in flight, read from the broker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from monitor_tools import m_wait
from polling import wait_until

from aethergraph import submit


def _status(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AETHERGRAPH_BROKER_URL": cluster.url,
        "AETHERGRAPH_NAMESPACE": cluster.namespace,
    }
    return subprocess.run(
        [sys.executable, "-m", "aethergraph", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json_status(cluster: Any) -> dict[str, Any]:
    done = _status(cluster, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_status_shows_workers_queues_and_the_run_in_flight(monitored: Any) -> None:
    # two waves of 2.5 s on 4 slots: a live-runs publish (every 2 s) lands inside a wave
    handle = submit(m_wait, n=8, seconds=2.5, executor=monitored.executor)
    try:
        status = wait_until(
            lambda: (
                (s := _json_status(monitored))["runs"]
                and any(w["held"] for w in s["workers"])
                and any(w["busy"] for w in s["workers"])
                and any(r["counts"].get("running") for r in s["runs"])
                and s
            ),
            "the run to show in aethergraph status, with nodes running",
        )
        (entry,) = [r for r in status["runs"] if r["run_id"] == handle.run_id]
        assert entry["graph"] == "m_wait"
        counts = entry["counts"]
        assert sum(counts.values()) == 8
        # 4 slots (2 workers x 2): sent nodes waiting in a worker's prefetch are queued
        assert 1 <= counts["running"] <= 4, counts
        assert counts["running"] + counts["queued"] + counts["done"] == 8, counts
        assert entry["origin"].startswith(f"{os.getpid()}@")
        workers = status["workers"]
        assert sorted(w["pid"] for w in workers) == sorted(p.pid for p in monitored.workers)
        for worker in workers:
            assert worker["pool"] == "prefork"
            assert worker["concurrency"] == 2
            assert "m_slow" in worker["tools"]
            assert worker["name"].startswith("w")
            assert 0 <= worker["busy"] <= worker["concurrency"]
            assert status["time"] - worker["last_heartbeat"] < 10
        queue = next(q for q in status["queues"] if q["name"] == "aethergraph")
        assert queue["workers"] == 2
        assert queue["key"] == f"{monitored.namespace}.aethergraph"
        text = _status(monitored)
        assert text.returncode == 0, text.stderr
        assert "workers: 2 live" in text.stdout
        assert re.search(r"preforkx2\s+[0-2]/2\s+\d+\s", text.stdout), text.stdout  # busy, held
        assert handle.run_id in text.stdout
        assert "m_wait" in text.stdout
    finally:
        assert handle.result(timeout=60) == {"ys": list(range(8))}
    # a finished run is no longer in flight (its client deletes it within a publish period)
    wait_until(
        lambda: all(r["run_id"] != handle.run_id for r in _json_status(monitored)["runs"]),
        "the finished run to leave aethergraph status",
    )


def test_status_without_a_broker_is_a_one_line_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AETHERGRAPH_BROKER_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "aethergraph", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: aethergraph status needs a broker")
