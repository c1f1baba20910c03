"""Distributed cost: AetherGraph on a LocalCluster vs hand-written raw Celery, same worker pool.

One run, one machine, one private ``redis-server`` (started by the LocalCluster, so the shared
Redis is never touched). Each side gets ONE worker process with the same pool settings (prefork,
``-c 2``, prefetch 1, acks_late, task events ``-E``, JSON); the two pools run one at a time, so
they never compete for the cores:

1. AetherGraph worker up: chain, fan-out/fan-in and payload graphs; then the worker is stopped.
2. No worker up: the client's Redis PING round trip (the floor under any hop).
3. Raw Celery worker up (``celery -A bench.raw_celery_app worker``, Redis DB 1, its own queue):
   the same workloads written the usual Celery way; then it is stopped.

Every figure is the median of ``repeats`` runs (after one warm-up run) with min and max; client
CPU is ``time.process_time`` of this process (all threads) per task.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import chain, chord, group
from kombu.utils import json as kombu_json

from aethergraph import graph_fn
from aethergraph.cluster import LocalCluster
from bench import raw_celery_app as raw
from bench.dist_tools import dist_blob_size, dist_make_blob, dist_noop, dist_total

ROOT = Path(__file__).resolve().parent.parent
TOOLS = str(ROOT / "bench" / "dist_tools.py")
POOL = "prefork"
CONCURRENCY = 2
#: the worker settings both sides share (recorded in the JSON)
POOL_SETTINGS = {
    "pool": POOL,
    "concurrency": CONCURRENCY,
    "worker_processes_per_side": 1,
    "prefetch_multiplier": 1,
    "acks_late": True,
    "task_events": "-E",
    "serializer": "json",
}
AG = "aethergraph LocalCluster"
FIGURES = {"ms/hop": "latency per hop", "tasks/s": "tasks/s", "s": "wall time"}


@dataclass(frozen=True)
class Sizes:
    hops: int = 50
    fan: int = 2_000
    payload: int = 10_000_000
    repeats: int = 5
    pings: int = 1_000


QUICK = Sizes(hops=20, fan=100, payload=1_000_000, repeats=2, pings=200)


# -- AetherGraph graphs --------------------------------------------------------------------------
@graph_fn(name="bench_dist_chain", outputs=["y"])
async def chain_graph(hops: int) -> Any:
    h = dist_noop(x=0)
    for _ in range(hops - 1):
        h = dist_noop(x=h["y"])
    return {"y": h["y"]}


@graph_fn(name="bench_dist_fan", outputs=["n"])
async def fan_graph(n: int) -> Any:
    handles = [dist_noop(x=i) for i in range(n)]
    return {"n": dist_total(xs=[h["y"] for h in handles])["n"]}


@graph_fn(name="bench_dist_payload", outputs=["n"])
async def payload_graph(size: int) -> Any:
    made = dist_make_blob(size=size)
    return {"n": dist_blob_size(blob=made["blob"])["n"]}


# -- measuring -----------------------------------------------------------------------------------
@dataclass
class Sample:
    """The repeats of one (workload, system): wall and client CPU seconds, client bytes."""

    wall: list[float]
    cpu: list[float]
    nbytes: list[int]


def measure(fn: Callable[[], int | None], repeats: int) -> Sample:
    """Run ``fn`` once to warm up, then ``repeats`` times; ``fn`` may return client bytes."""
    fn()
    sample = Sample([], [], [])
    for _ in range(repeats):
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        nbytes = fn()
        sample.wall.append(time.perf_counter() - wall0)
        sample.cpu.append(time.process_time() - cpu0)
        if nbytes is not None:
            sample.nbytes.append(nbytes)
    return sample


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def expect(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise RuntimeError(f"{what}: expected {want!r}, got {got!r}")


def measure_aethergraph(cluster: LocalCluster, s: Sizes) -> dict[str, Sample]:
    stats = cluster.executor.stats

    def chained() -> None:
        expect(cluster.run(chain_graph, hops=s.hops), {"y": 0}, "aethergraph chain")

    def fanned() -> None:
        expect(cluster.run(fan_graph, n=s.fan), {"n": s.fan}, "aethergraph fan-out")

    def payload() -> int:
        before = stats["published_bytes"] + stats["result_bytes"]
        expect(cluster.run(payload_graph, size=s.payload), {"n": s.payload}, "aethergraph payload")
        return stats["published_bytes"] + stats["result_bytes"] - before

    return {
        "chain": measure(chained, s.repeats),
        "fan": measure(fanned, s.repeats),
        "payload": measure(payload, s.repeats),
    }


def measure_raw_celery(url: str, s: Sizes) -> dict[str, Sample]:
    store = redis.Redis.from_url(url)

    def loop() -> None:
        x = 0
        for _ in range(s.hops):
            x = raw.noop.apply_async((x,)).get()
        expect(x, 0, "raw Celery loop")

    def chained() -> None:
        sig = chain(raw.noop.s(0), *[raw.noop.s() for _ in range(s.hops - 1)])
        expect(sig.apply_async().get(), 0, "raw Celery chain()")

    def grouped() -> None:
        values = group(raw.noop.s(i) for i in range(s.fan)).apply_async().get()
        expect(len(values), s.fan, "raw Celery group")  # the fan-in, done by the client

    def chorded() -> None:
        sig = chord(group(raw.noop.s(i) for i in range(s.fan)), raw.total.s())
        expect(sig.apply_async().get(), s.fan, "raw Celery chord")

    def payload() -> int:
        made = raw.make_blob.apply_async((s.payload,))
        blob = made.get()
        used = raw.blob_size.apply_async((blob,))
        expect(used.get(), s.payload, "raw Celery payload")
        # bytes through the client: the result document fetched + the JSON task body sent
        fetched = len(store.get(f"celery-task-meta-{made.id}") or b"")
        sent = len(kombu_json.dumps([[blob], {}, {}]))
        made.forget()
        used.forget()
        return fetched + sent

    try:
        return {
            "loop": measure(loop, s.repeats),
            "chain": measure(chained, s.repeats),
            "group": measure(grouped, s.repeats),
            "chord": measure(chorded, s.repeats),
            "payload": measure(payload, s.repeats),
        }
    finally:
        store.close()


def measure_ping(url: str, s: Sizes) -> tuple[Sample, list[float]]:
    """``s.pings`` PINGs per repeat: the batches (as a Sample) and each batch's median RTT (s)."""
    client = redis.Redis.from_url(url)
    medians: list[float] = []

    def batch() -> None:
        rtts = []
        for _ in range(s.pings):
            t0 = time.perf_counter()
            client.ping()
            rtts.append(time.perf_counter() - t0)
        medians.append(statistics.median(rtts))

    try:
        sample = measure(batch, s.repeats)
        return sample, medians[1:]  # the first batch was the warm-up
    finally:
        client.close()


# -- the raw Celery worker -----------------------------------------------------------------------
@contextmanager
def raw_celery_worker(url: str, timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A bench.raw_celery_app worker`` with the same pool settings as AetherGraph's."""
    raw.configure(url)
    with tempfile.TemporaryDirectory(prefix="bench-raw-celery-") as tmp:
        log_path = Path(tmp) / "worker.log"
        command = [
            sys.executable, "-m", "celery", "-A", "bench.raw_celery_app", "worker",
            "--pool", POOL, "-c", str(CONCURRENCY), "-E", "-Q", raw.QUEUE,
            "-l", "WARNING", "-n", f"bench-raw-{os.getpid()}@{socket.gethostname()}",
        ]  # fmt: skip
        env = {**os.environ, raw.URL_ENV: url, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            probe = raw.noop.apply_async((0,))
            while not probe.ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"raw Celery worker did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
            probe.forget()
            yield proc
        finally:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (warm shutdown) a worker and its pool children; SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


# -- rows ----------------------------------------------------------------------------------------
def _row(workload: str, system: str, sample: Sample, per: int, unit: str) -> dict[str, Any]:
    """One table row: per-hop latency (ms/hop), throughput (tasks/s) or wall time (s).

    ``per``: the tasks (hops, pings) of one repeat, for the per-task figures.
    """
    if unit == "tasks/s":
        value = {k: per / v for k, v in spread(sample.wall).items()}
        value["min"], value["max"] = value["max"], value["min"]
    elif unit == "ms/hop":
        value = {k: v / per * 1e3 for k, v in spread(sample.wall).items()}
    else:
        value = spread(sample.wall)  # the Redis floor row replaces it with the RTT
    row: dict[str, Any] = {
        "workload": workload,
        "system": system,
        "unit": unit,
        "better": "higher" if unit == "tasks/s" else "lower",
        "repeats": len(sample.wall),
        "tasks": per,
        "value": value,
        "wall_s": spread(sample.wall),
        "client_cpu_us_per_task": statistics.median(sample.cpu) / per * 1e6,
        "raw": {"wall_s": sample.wall, "client_cpu_s": sample.cpu},
    }
    if sample.nbytes:
        row["client_bytes"] = statistics.median(sample.nbytes)
        row["raw"]["client_bytes"] = sample.nbytes
    return row


def build_rows(
    s: Sizes, ag: dict[str, Sample], rc: dict[str, Sample], pings: tuple[Sample, list[float]]
) -> list[dict[str, Any]]:
    chain_w = f"chain of {s.hops} dependent no-op tools"
    fan_w = f"fan-out of {s.fan} no-op tools + 1 reducer"
    pay_w = f"payload: {s.payload / 1e6:g} MB bytes, producer -> consumer"
    ping = _row("Redis floor", "client PING round trip (redis-py)", pings[0], s.pings, "us")
    ping["value"] = {k: v * 1e6 for k, v in spread(pings[1]).items()}
    ping["raw"]["median_rtt_s"] = pings[1]
    return [
        _row(chain_w, "raw Celery: apply_async().get() loop", rc["loop"], s.hops, "ms/hop"),
        _row(chain_w, "raw Celery: chain(...).apply_async().get()", rc["chain"], s.hops, "ms/hop"),
        _row(chain_w, AG, ag["chain"], s.hops, "ms/hop"),
        _row(fan_w, "raw Celery: group(...).get() (client reduces)", rc["group"], s.fan, "tasks/s"),
        _row(fan_w, "raw Celery: chord(group, reducer).get()", rc["chord"], s.fan + 1, "tasks/s"),
        _row(fan_w, AG, ag["fan"], s.fan + 1, "tasks/s"),
        _row(pay_w, "raw Celery: result backend, client re-sends", rc["payload"], 2, "s"),
        _row(pay_w, AG, ag["payload"], 2, "s"),
        ping,
    ]


def build_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AetherGraph / raw Celery, median against median, for each pair measured in this run."""
    ratios = []
    for ag in (r for r in rows if r["system"] == AG):
        for base in (r for r in rows if r["workload"] == ag["workload"] and r["system"] != AG):
            figures = [(FIGURES[ag["unit"]], "value", ag["better"])]
            if "client_bytes" in ag:
                figures.append(("client bytes", "client_bytes", "lower"))
            if ag["unit"] == "tasks/s":
                figures.append(("client CPU/task", "client_cpu_us_per_task", "lower"))
            for label, key, better in figures:
                mine, theirs = ag[key], base[key]
                if isinstance(mine, dict):
                    mine, theirs = mine["median"], theirs["median"]
                ratio = mine / theirs
                ag_better = ratio > 1 if better == "higher" else ratio < 1
                ratios.append(
                    {
                        "workload": ag["workload"],
                        "figure": label,
                        "versus": base["system"],
                        "ratio": ratio,
                        "better": better,
                        "aethergraph_better": ag_better,
                    }
                )
    return ratios


def format_table(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    header = (
        f"{'system':<48} {'unit':>8} {'median':>10} {'min':>10} {'max':>10} "
        f"{'CPU us/task':>12} {'client MB':>10}"
    )
    pool = (
        f"pool: {POOL} -c {CONCURRENCY}, prefetch 1, acks_late, -E, JSON; "
        "1 worker process per side, one side at a time"
    )
    lines = ["distributed: AetherGraph LocalCluster vs raw Celery", pool, header, "-" * len(header)]
    workload = None
    for r in rows:
        if r["workload"] != workload:
            workload = r["workload"]
            lines.append(f"{workload} ({r['better']} is better)")
        v = r["value"]
        cpu = r.get("client_cpu_us_per_task")
        mb = r.get("client_bytes")
        lines.append(
            f"  {r['system']:<46} {r['unit']:>8} {v['median']:>10,.2f} {v['min']:>10,.2f} "
            f"{v['max']:>10,.2f} {'' if cpu is None else f'{cpu:,.0f}':>12} "
            f"{'' if mb is None else f'{mb / 1e6:.4f}':>10}"
        )
    lines += ["", "ratio = AetherGraph / raw Celery, median by median, same run:"]
    for q in ratios:
        sense = "> 1" if q["better"] == "higher" else "< 1"
        winner = "AetherGraph" if q["aethergraph_better"] else "raw Celery"
        lines.append(
            f"  {q['figure']:<16} vs {q['versus']:<46} {q['ratio']:>9.3g}  "
            f"({sense} favours AetherGraph): {winner} better"
        )
    return "\n".join(lines)


# -- the whole section ---------------------------------------------------------------------------
def run_distributed(s: Sizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure everything (see the module docstring); return (rows, ratios)."""
    with LocalCluster(workers=1, tools=[TOOLS], concurrency=CONCURRENCY, pool=POOL) as cluster:
        ag = measure_aethergraph(cluster, s)
        stop_process_group(cluster.workers[0])  # free the cores before raw Celery runs
        raw_url = cluster.url.rsplit("/", 1)[0] + "/1"  # same private Redis, its own DB
        pings = measure_ping(raw_url, s)
        with raw_celery_worker(raw_url):
            rc = measure_raw_celery(raw_url, s)
    rows = build_rows(s, ag, rc, pings)
    return rows, build_ratios(rows)
