"""Durable runs: resume a failed run, reattach after the client was SIGKILLed, list and attach.

Every tool call appends a line to an execution log (a file the worker processes share), so the
tests count how often each node really ran, across clients: exactly once for every node that
succeeded, whatever happened to the clients.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aethergraph import attach, run
from aethergraph.errors import ConfigurationError, RunFailedError, ToolError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from polling import wait_until

TOOLS = """
import os, time
from aethergraph import graph_fn, tool

def _log(kind, value):
    with open(os.environ["DURABLE_LOG"], "a") as log:
        log.write(f"{kind} {value}\\n")

@tool(outputs=["y"])
def d_step(x: int):
    time.sleep(float(os.environ.get("DURABLE_SLEEP", "0")))
    _log("step", x)
    return {"y": x * 2}

@tool(outputs=["z"])
def d_check(y: int):
    _log("check", y)
    if os.path.exists(os.environ["DURABLE_FAIL"]) and y == 6:
        raise ValueError("d_check refuses 6")
    return {"z": y + 1}

@tool(outputs=["total"])
def d_total(values: list):
    _log("total", len(values))
    return {"total": sum(values)}

@graph_fn(name="durable_sweep", outputs=["total"])
async def durable_sweep(n: int):
    zs = [d_check(y=d_step(x=i)["y"])["z"] for i in range(n)]
    return {"total": d_total(values=zs)["total"]}
"""


def _expected(n: int) -> int:
    return sum(2 * i + 1 for i in range(n))


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A LocalCluster serving the tools module, and the module imported here too."""
    from aethergraph.cluster import LocalCluster

    folder = tmp_path_factory.mktemp("durable")
    module = folder / "durable_tools.py"
    module.write_text(TOOLS)
    log, fail = folder / "executions.log", folder / "fail"
    env = {"DURABLE_LOG": str(log), "DURABLE_FAIL": str(fail), "DURABLE_SLEEP": "0.3"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the client's own calls see the same files (it runs none)
    sys.path.insert(0, str(folder))
    try:
        tools = importlib.import_module("durable_tools")
        with LocalCluster(workers=2, tools=[str(module)], env=env) as cluster:
            yield {"cluster": cluster, "tools": tools, "log": log, "fail": fail, "env": env}
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("durable_tools", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _executions(log: Path) -> Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(lines)


def test_a_failed_run_resumes_from_where_it_failed(durable: dict[str, Any]) -> None:
    cluster, tools, log, fail = (durable[k] for k in ("cluster", "tools", "log", "fail"))
    log.unlink(missing_ok=True)
    fail.touch()
    with pytest.raises(ToolError, match="d_check refuses 6"):
        run(tools.durable_sweep, n=6, executor=cluster, run_id="resume-after-failure")
    fail.unlink()

    out = run(
        tools.durable_sweep, n=6, executor=cluster, run_id="resume-after-failure", resume=True
    )
    assert out == {"total": _expected(6)}
    counts = _executions(log)
    # every step and every successful check ran once; the failed check ran again, once
    assert {line: n for line, n in counts.items() if line != "check 6"} == {
        **{f"step {i}": 1 for i in range(6)},
        **{f"check {2 * i}": 1 for i in range(6) if i != 3},
        "total 6": 1,
    }
    assert counts["check 6"] == 2
    graph = tools.durable_sweep.last_graph
    reused = Counter(node.reused for node in graph)
    assert reused == {"resumed": 11, None: 2}  # d_check_3 and d_total_0 ran

    # the record: listed, and readable from anywhere
    handle = attach("resume-after-failure", cluster)
    assert handle.status == "done"
    assert handle.result(timeout=10) == {"total": _expected(6)}
    assert handle.counts == {"done": 13}
    handle.close()


def _aethergraph(cluster: Any, *args: str) -> str:
    env = {
        **os.environ,
        "AETHERGRAPH_BROKER_URL": cluster.url,
        "AETHERGRAPH_NAMESPACE": cluster.namespace,
    }
    done = subprocess.run(
        [sys.executable, "-m", "aethergraph", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_runs_lists_the_records_and_attach_explains_what_is_missing(
    durable: dict[str, Any],
) -> None:
    cluster, tools = durable["cluster"], durable["tools"]
    run(tools.durable_sweep, n=2, executor=cluster, run_id="listed-run")
    listed = {r["run_id"]: r for r in json.loads(_aethergraph(cluster, "runs", "--json"))}
    table = _aethergraph(cluster, "runs")
    assert listed["listed-run"]["state"] == "done"
    assert listed["listed-run"]["nodes"] == {"done": 5}
    assert listed["listed-run"]["graph"] == "durable_sweep"
    assert "listed-run" in table
    assert "durable_sweep" in table
    with pytest.raises(ConfigurationError, match="no record of run 'never-ran'"):
        attach("never-ran", cluster)
    with pytest.raises(ConfigurationError, match="needs the run_id"):
        run(tools.durable_sweep, n=1, executor=cluster, resume=True)


CLIENT = """
    import sys
    sys.path.insert(0, {folder!r})
    from aethergraph import run
    import durable_tools
    run(durable_tools.durable_sweep, n={n}, executor="celery", run_id={run_id!r})
"""


def _start_client(durable: dict[str, Any], n: int, run_id: str, lease: float) -> int:
    """Client A: starts the run in a process of its own, SIGKILLed once 4 nodes ran."""
    cluster, log = durable["cluster"], durable["log"]
    program = CLIENT.format(folder=str(Path(durable["tools"].__file__).parent), n=n, run_id=run_id)
    env = {
        **os.environ,
        **durable["env"],
        "AETHERGRAPH_BROKER_URL": cluster.url,
        "AETHERGRAPH_NAMESPACE": cluster.namespace,
        "AETHERGRAPH_CLIENT_LEASE": str(lease),
    }
    client = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(program)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: sum(_executions(log).values()) >= 4, "client A's first nodes", 60)
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(10)
    return client.returncode


def _every_node_once(n: int) -> dict[str, int]:
    return {
        **{f"step {i}": 1 for i in range(n)},
        **{f"check {2 * i}": 1 for i in range(n)},
        f"total {n}": 1,
    }


def test_a_killed_clients_run_is_reattached_its_sent_nodes_adopted_not_rerun(
    durable: dict[str, Any],
) -> None:
    """Client A is SIGKILLed mid-run; this process resumes it at once (A's lease still
    holds): finished nodes are reused, the ones A had sent are adopted, the rest run."""
    cluster, tools, log = durable["cluster"], durable["tools"], durable["log"]
    log.unlink(missing_ok=True)
    n, run_id = 12, "reattach-after-sigkill"
    assert _start_client(durable, n, run_id, lease=30) == -signal.SIGKILL
    watched = attach(run_id, cluster)
    assert watched.status == "running"  # A's lease has not run out: it looks alive
    sent_before = watched.counts.get("sent", 0)
    watched.close()

    out = run(tools.durable_sweep, n=n, executor=cluster, run_id=run_id, resume=True)
    assert out == {"total": _expected(n)}
    assert dict(_executions(log)) == _every_node_once(n)  # across both clients
    reused = Counter(node.reused for node in tools.durable_sweep.last_graph)
    assert reused["resumed"] >= 4  # what A finished was not run again
    assert sent_before >= 1  # and A had nodes out that this client adopted
    assert attach(run_id, cluster).status == "done"


def test_an_abandoned_run_says_so_and_resumes_what_the_workers_dropped(
    durable: dict[str, Any],
) -> None:
    """A's lease runs out before anyone resumes: attach() reports the run abandoned (and
    how to continue it); the workers drop A's queued nodes and mark them in the record; the
    resumed run runs exactly those."""
    cluster, tools, log = durable["cluster"], durable["tools"], durable["log"]
    log.unlink(missing_ok=True)
    n, run_id = 12, "abandoned-then-resumed"
    _start_client(durable, n, run_id, lease=1)
    watched = attach(run_id, cluster)
    wait_until(lambda: watched.refresh() and watched.status == "abandoned", "the abandoned run")
    with pytest.raises(RunFailedError, match=r"abandoned.*resume=True"):
        watched.result(timeout=5)
    # the workers drop what A left queued (its client is gone), saying so in the record
    wait_until(lambda: watched.refresh() and not watched.counts.get("sent"), "dropped nodes")
    watched.close()

    out = run(tools.durable_sweep, n=n, executor=cluster, run_id=run_id, resume=True)
    assert out == {"total": _expected(n)}
    assert dict(_executions(log)) == _every_node_once(n)


def test_nodes_cancelled_by_fail_fast_are_not_left_as_sent_and_run_on_resume(
    durable: dict[str, Any],
) -> None:
    """A fail_fast run cancels what is still out; their record entries say so (a resumed run
    runs them, instead of adopting messages that were revoked)."""
    cluster, tools, log, fail = (durable[k] for k in ("cluster", "tools", "log", "fail"))
    log.unlink(missing_ok=True)
    fail.touch()
    run_id = "cancelled-then-resumed"
    try:
        with pytest.raises(ToolError, match="d_check refuses 6"):
            run(tools.durable_sweep, n=12, executor=cluster, run_id=run_id, fail_fast=True)
    finally:
        fail.unlink()
    watched = attach(run_id, cluster)
    assert watched.status == "failed"
    wait_until(lambda: watched.refresh() and not watched.counts.get("sent"), "no node left sent")
    watched.close()
    out = run(tools.durable_sweep, n=12, executor=cluster, run_id=run_id, resume=True)
    assert out == {"total": _expected(12)}
    counts = _executions(log)
    assert all(counts[f"step {i}"] >= 1 for i in range(12))
    assert counts["total 12"] == 1
