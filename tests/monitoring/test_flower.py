"""Flower tells the truth: what it shows for failed, retried, packed and successful nodes.

A real ``aethergraph flower`` process watches a real LocalCluster; the assertions read Flower's
own HTTP API (``/api/tasks``) and its Prometheus ``/metrics`` — what an operator sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flower", reason="Flower is the optional extra aethergraph[flower]")

from monitor_tools import m_fails, m_fan, m_retries, m_squares
from polling import stop_group, wait_until

from aethergraph import run
from aethergraph.errors import ToolError
from aethergraph.redis_server import free_port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def flower(monitored: Any) -> Iterator[str]:
    """``aethergraph flower`` on the cluster's broker and namespace; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "AETHERGRAPH_BROKER_URL": monitored.url,
        "AETHERGRAPH_NAMESPACE": monitored.namespace,
        "FLOWER_UNAUTHENTICATED_API": "true",  # the test reads Flower's API without a login
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "aethergraph", "flower", f"--port={port}", "--address=127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _answers(f"{base}/healthcheck"), "Flower")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        # events flow once Flower has seen the workers' heartbeats
        wait_until(
            lambda: _get(f"{base}/metrics").count("flower_worker_online{") >= 2,
            "Flower to see both workers",
        )
        yield base
    finally:
        stop_group(proc, grace=10)


def _tasks(base: str, search: str) -> dict[str, dict[str, Any]]:
    query = urllib.parse.urlencode({"search": search})
    return dict(json.loads(_get(f"{base}/api/tasks?{query}")))


def _settled(base: str, search: str, n: int, states: set[str]) -> dict[str, dict[str, Any]]:
    def probe() -> dict[str, dict[str, Any]] | None:
        found = _tasks(base, search)
        done = {k: t for k, t in found.items() if t.get("state") in states}
        return found if len(found) >= n and len(done) == len(found) else None

    return dict(wait_until(probe, f"{n} settled tasks matching {search!r} in Flower"))


def test_a_failing_tool_is_a_failure_with_its_traceback(monitored: Any, flower: str) -> None:
    with pytest.raises(ToolError):
        run(m_fails, x=7, executor=monitored.executor)
    run_id = m_fails.last_graph.run_id
    tasks = _settled(flower, run_id, 1, {"FAILURE", "SUCCESS"})
    assert len(tasks) == 1
    (task,) = tasks.values()
    assert task["name"] == "m_explode"
    assert task["state"] == "FAILURE", task
    assert "m_explode_0" in task["exception"]
    assert "ValueError" in task["exception"]
    # the tool's own frame and line, not only Celery's
    assert 'raise ValueError(f"m_explode refuses {x}")' in task["traceback"]
    assert "m_explode refuses 7" in task["traceback"]
    # found by the run id, free text and the exact kwargs search
    assert set(_tasks(flower, f"kwargs:run_id={run_id}")) == set(tasks)
    kwargs = task["kwargs"]
    assert f"'run_id': '{run_id}'" in kwargs
    assert "'node_id': 'm_explode_0'" in kwargs
    assert "'x': 7" in kwargs
    # the worker log says so too, with the traceback
    logs = monitored.worker_log(0) + monitored.worker_log(1)
    assert "m_explode refuses 7" in logs
    assert "ToolError" in logs


def test_a_retried_node_shows_a_retry_then_a_success(monitored: Any, flower: str) -> None:
    assert run(m_retries, x=3, executor=monitored.executor) == {"y": 3}
    run_id = m_retries.last_graph.run_id
    tasks = _settled(flower, run_id, 2, {"RETRY", "SUCCESS", "FAILURE"})
    states = sorted(t["state"] for t in tasks.values())
    assert states == ["RETRY", "SUCCESS"], tasks
    retried = next(t for t in tasks.values() if t["state"] == "RETRY")
    assert "m_flaky fails its first attempt" in retried["exception"]
    assert "'attempt': 1" in retried["kwargs"]
    succeeded = next(t for t in tasks.values() if t["state"] == "SUCCESS")
    assert "'attempt': 2" in succeeded["kwargs"]
    assert run_id in succeeded["result"]
    assert "m_flaky_0" in succeeded["result"]


def test_a_pack_names_its_nodes_and_which_failed(monitored: Any, flower: str) -> None:
    n = 64  # 4 slots: 64 ready nodes of one tool travel 4 to a message
    with pytest.raises(ToolError):
        run(m_fan, n=n, executor=monitored.executor)
    run_id = m_fan.last_graph.run_id
    failing = {f"m_sometimes_{i}" for i in range(n) if i % 16 == 5}

    def all_nodes_shown() -> dict[str, dict[str, Any]] | None:
        found = _settled(flower, run_id, 1, {"SUCCESS", "FAILURE"})
        shown = " ".join(t["kwargs"] for t in found.values())
        return found if all(f"'m_sometimes_{i}'" in shown for i in range(n)) else None

    tasks = wait_until(all_nodes_shown, "every node of the run in Flower's kwargs")
    packs = {k: t for k, t in tasks.items() if "'nodes':" in t["kwargs"]}
    assert packs, "the nodes were expected to travel packed"
    named = set()
    for task in tasks.values():
        assert f"'run_id': '{run_id}'" in task["kwargs"]
        carried = {node for node in failing if f"'{node}'" in task["kwargs"]}
        if not carried:
            assert task["state"] == "SUCCESS", task
            continue
        assert task["state"] == "FAILURE", task
        assert "m_sometimes has no entry" in task["traceback"]
        if task in packs.values():  # which of its nodes failed, and why
            assert "NodesFailedError" in task["exception"], task["exception"]
            assert all(f"{node} (KeyError" in task["exception"] for node in carried)
        else:
            assert "ToolError" in task["exception"]
        named |= carried
    assert named == failing


def test_flower_metrics_count_failures_and_retries(monitored: Any, flower: str) -> None:
    with pytest.raises(ToolError):
        run(m_fails, x=1, executor=monitored.executor)
    run(m_squares, n=3, executor=monitored.executor)

    def counts() -> dict[str, float] | None:
        found: dict[str, float] = {}
        for line in _get(f"{flower}/metrics").splitlines():
            if line.startswith("flower_events_total{"):
                labels, value = line.rsplit(" ", 1)
                for kind in ("task-failed", "task-retried", "task-succeeded"):
                    if f'type="{kind}"' in labels and ('task="m_' in labels):
                        key = f"{kind}:{labels.split('task=')[1].split(',')[0].strip(chr(34))}"
                        found[key] = found.get(key, 0.0) + float(value)
        failed, succeeded = (
            found.get("task-failed:m_explode", 0),
            found.get("task-succeeded:m_square", 0),
        )
        return found if failed >= 1 and succeeded >= 1 else None

    found = wait_until(
        counts, "flower_events_total of m_explode's failure and m_square's successes"
    )
    assert found["task-failed:m_explode"] >= 1
    assert found.get("task-succeeded:m_explode", 0) == 0  # never counted as a success
    assert found.get("task-succeeded:m_square", 0) >= 1
