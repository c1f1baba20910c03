"""Chaos scenarios: a run on a real two-worker pool, one real fault midway, every node checked.

Each trial starts its own private ``redis-server`` (never the machine's shared Redis; the trial
may kill and restart it) and a ``LocalCluster`` of two prefork (or threads) workers with two
slots each, submits :data:`NODES` nodes of ``chaos_step`` and, once a few have started, injects
the scenario's fault. Every execution is recorded in a file (a Redis restart cannot erase it),
every node outcome the client reports is counted (``on_event``), and the trial yields:

* ``lost``: nodes whose outcome is missing or wrong in the run's result;
* ``duplicates``: nodes the client reported more than once (never allowed);
* ``reruns``: executions beyond one per node — at-least-once execution, expected after a fault;
* ``recovery``: seconds from the fault until every node that was running at the fault has been
  reported by the client (for the client-kill scenario: until the pool stopped starting the dead
  client's nodes).

``python tests/chaos/table.py --trials 10`` (``make chaos``) runs each scenario repeatedly and
prints the table; ``test_chaos.py`` runs each once.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_tools import chaos_step

from aethergraph import graph_fn, submit
from aethergraph.cluster import LocalCluster
from aethergraph.redis_server import RedisServer
from aethergraph.scheduling.events import NodeEvent

HERE = Path(__file__).resolve().parent
TOOLS = str(HERE / "chaos_tools.py")
NODES = 40
STEP = 0.25  # seconds each node runs
FAULT_AFTER = 8  # nodes started before the fault


@graph_fn(name="chaos_run")
async def chaos_run(log: str, n: int, seconds: float, slow: float) -> Any:
    # node 0 may be slow: the one a graceful stop cannot wait for
    return {
        "ys": [chaos_step(log=log, i=i, seconds=slow if i == 0 else seconds)["y"] for i in range(n)]
    }


@dataclass
class Trial:
    scenario: str
    nodes: int
    lost: int | None  # None: not applicable (a killed client's run has no result)
    duplicates: int
    reruns: int
    recovery: float | None
    bound: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    fault: Callable[[Harness], None]
    bound: float  # seconds recovery must stay under
    pool: str = "prefork"
    persistent: bool = False
    env: dict[str, str] = field(default_factory=dict)
    slow: float = STEP
    #: whose report ends the recovery: the nodes running at the fault ("running"), or every
    #: node not reported yet ("pending": a broker restart may lose the queued ones too)
    victims: str = "running"


class Harness:
    """One trial's Redis, pool, execution log and fault bookkeeping."""

    def __init__(self, scenario: Scenario, folder: Path) -> None:
        self.scenario = scenario
        self.folder = folder
        self.log = folder / "executions.jsonl"
        self.log.touch()
        self.server = RedisServer(persistent=scenario.persistent)
        self.cluster: LocalCluster | None = None
        self.fault_at = 0.0

    @contextmanager
    def running(self) -> Iterator[Harness]:
        self.server.start()
        try:
            with LocalCluster(
                workers=2,
                tools=[TOOLS],
                concurrency=2,
                pool=self.scenario.pool,
                redis_url=self.server.url,
                env={"PYTHONPATH": str(HERE), **self.scenario.env},
            ) as cluster:
                self.cluster = cluster
                yield self
        finally:
            self.server.stop()

    def executions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wait_for_starts(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        pause, deadline = threading.Event(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            starts = [e for e in self.executions() if e["ev"] == "start"]
            if len(starts) >= n:
                return starts
            pause.wait(0.02)
        raise AssertionError(f"{n} nodes did not start within {timeout}s")

    def running_now(self) -> list[dict[str, Any]]:
        """Executions started and not ended (the fault's candidates)."""
        events = self.executions()
        ended = {(e["i"], e["pid"]) for e in events if e["ev"] == "end"}
        return [e for e in events if e["ev"] == "start" and (e["i"], e["pid"]) not in ended]

    def worker_of(self, pid: int) -> int:
        assert self.cluster is not None
        group = os.getpgid(pid)
        (index,) = [i for i, w in enumerate(self.cluster.workers) if w.pid == group]
        return index


# -- the faults -------------------------------------------------------------------------------
def _busy_pid(h: Harness) -> int:
    return int(h.running_now()[-1]["pid"])


def kill_worker(h: Harness) -> None:
    assert h.cluster is not None
    index = h.worker_of(_busy_pid(h))
    h.fault_at = time.time()
    h.cluster.kill_worker(index, signal.SIGKILL)


def kill_pool_process(h: Harness) -> None:
    pid = _busy_pid(h)
    h.fault_at = time.time()
    os.kill(pid, signal.SIGKILL)


def sigterm_worker(h: Harness) -> None:
    assert h.cluster is not None
    slow = [e for e in h.running_now() if e["i"] == 0]  # the node that outlasts the grace
    pid = int(slow[0]["pid"]) if slow else _busy_pid(h)
    h.fault_at = time.time()
    h.cluster.kill_worker(h.worker_of(pid), signal.SIGTERM)  # the whole group, as Slurm does


def restart_redis(h: Harness) -> None:
    h.fault_at = time.time()
    h.server.kill()
    threading.Event().wait(2.0)  # the outage: its length is the scenario
    h.server.restart()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("kill -9 prefork worker", kill_worker, bound=15),
        Scenario("kill -9 one pool process", kill_pool_process, bound=10),
        Scenario(
            "SIGTERM worker (grace 1 s)",
            sigterm_worker,
            bound=15,
            env={"AETHERGRAPH_STOP_GRACE": "1"},
            slow=4.0,
        ),
        Scenario("kill -9 threads worker", kill_worker, bound=15, pool="threads"),
        Scenario("Redis restart, AOF", restart_redis, bound=20, persistent=True, victims="pending"),
        Scenario("Redis restart, no persistence", restart_redis, bound=60, victims="pending"),
    ]
}
CLIENT_KILL = "kill -9 client"
CLIENT_LEASE = 3.0


def run_trial(name: str) -> Trial:
    if name == CLIENT_KILL:
        return _client_kill_trial()
    scenario = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix="aethergraph-chaos-") as tmp:
        h = Harness(scenario, Path(tmp))
        with h.running():
            return _trial(h)


def _trial(h: Harness) -> Trial:
    assert h.cluster is not None
    scenario = h.scenario
    reported: Counter[str] = Counter()
    reported_at: dict[str, float] = {}

    def on_event(event: Any) -> None:
        if isinstance(event, NodeEvent) and event.type in ("done", "failed"):
            reported[event.node_id] += 1
            reported_at.setdefault(event.node_id, time.time())

    handle = submit(
        chaos_run,
        {"log": str(h.log), "n": NODES, "seconds": STEP, "slow": scenario.slow},
        executor=h.cluster.executor,
        on_event=on_event,
    )
    h.wait_for_starts(FAULT_AFTER)
    if scenario.slow > STEP:  # wait for the slow node to be running before the fault
        h.wait_for_starts(1)
        _wait(lambda: any(e["i"] == 0 for e in h.running_now()), "the slow node to start")
    in_flight = {e["i"] for e in h.running_now()}
    if scenario.victims == "pending":
        in_flight = {i for i in range(NODES) if f"chaos_step_{i}" not in reported_at}
    scenario.fault(h)
    notes: list[str] = []
    try:
        result = handle.result(180)
        ys = list(result["ys"])
    except Exception as exc:  # counted below as lost nodes
        notes.append(f"run failed: {exc}")
        ys = []
    lost = sum(1 for i in range(NODES) if i >= len(ys) or ys[i] != 2 * i)
    starts = Counter(e["i"] for e in h.executions() if e["ev"] == "start")
    node_ids = [f"chaos_step_{i}" for i in in_flight]
    done_times = [reported_at[n] for n in node_ids if n in reported_at]
    recovery = max(done_times) - h.fault_at if done_times and in_flight else None
    return Trial(
        scenario=scenario.name,
        nodes=NODES,
        lost=lost,
        duplicates=sum(1 for count in reported.values() if count > 1),
        reruns=sum(starts.values()) - len(starts),
        recovery=recovery,
        bound=scenario.bound,
        notes=notes,
    )


def _wait(probe: Callable[[], bool], what: str, timeout: float = 60) -> None:
    pause, deadline = threading.Event(), time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.02)


# -- the client that dies ---------------------------------------------------------------------
_CLIENT = """
import sys
sys.path.insert(0, {here!r})
from scenarios import chaos_run
from aethergraph import submit
from aethergraph.execution.celery import CeleryExecutor
from aethergraph.settings import get_settings

settings = get_settings().model_copy(
    update={{"broker_url": {url!r}, "namespace": {ns!r}, "client_lease": {lease!r}}}
)
handle = submit(chaos_run, {{"log": {log!r}, "n": {n}, "seconds": {step}, "slow": {step}}},
                executor=CeleryExecutor(settings=settings))
handle.result(600)
"""


def _client_kill_trial() -> Trial:
    scenario = Scenario(CLIENT_KILL, lambda h: None, bound=CLIENT_LEASE + 4)
    n = NODES * 5  # more than the pool runs before the kill
    with tempfile.TemporaryDirectory(prefix="aethergraph-chaos-") as tmp:
        h = Harness(scenario, Path(tmp))
        with h.running():
            assert h.cluster is not None
            script = _CLIENT.format(
                here=str(HERE),
                url=h.cluster.url,
                ns=h.cluster.namespace,
                lease=CLIENT_LEASE,
                log=str(h.log),
                n=n,
                step=STEP,
            )
            proc = subprocess.Popen([sys.executable, "-c", script])
            try:
                h.wait_for_starts(FAULT_AFTER)
                h.fault_at = time.time()
                proc.kill()
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            keys = h.cluster.keys
            client = h.server.client(socket_timeout=None)
            try:
                _wait(
                    lambda: (
                        not client.llen(keys.tool_queue(None))
                        and not client.hlen(keys.celery_unacked())
                    ),
                    "the pool to drop the dead client's messages",
                    timeout=120,
                )
                ns_keys = list(client.scan_iter(match=f"{keys.ns}:client:*"))
                no_ttl = [k for k in ns_keys if client.pttl(k) < 0]
            finally:
                client.close()
            starts = [e for e in h.executions() if e["ev"] == "start"]
            last_start = max(e["t"] for e in starts)
            notes = [f"{len(starts)} of {n} nodes started"]
            if no_ttl:
                notes.append(f"keys without a TTL: {no_ttl}")
            return Trial(
                scenario=CLIENT_KILL,
                nodes=n,
                lost=None,
                duplicates=0,
                reruns=len(starts) - len({e["i"] for e in starts}),
                recovery=max(0.0, last_start - h.fault_at),
                bound=scenario.bound,
                notes=notes,
            )


ALL = [*SCENARIOS, CLIENT_KILL]


def summary(trials: list[Trial]) -> dict[str, Any]:
    recoveries = [t.recovery for t in trials if t.recovery is not None]
    return {
        "trials": len(trials),
        "lost": None if any(t.lost is None for t in trials) else sum(t.lost or 0 for t in trials),
        "duplicates": sum(t.duplicates for t in trials),
        "reruns": sum(t.reruns for t in trials),
        "median": statistics.median(recoveries) if recoveries else None,
        "max": max(recoveries) if recoveries else None,
        "bound": trials[0].bound if trials else None,
    }
