"""Raw Celery's side: the workloads written the usual Celery way, on a worker set up like ours.

``celery -A bench.raw_celery_app worker`` gets the same pool, concurrency, prefetch, acks and
events settings as the AetherGraph worker (:data:`bench.workloads.WORKER_SETTINGS`) and uses
the same private Redis (its own DB and queue). Also here: the Redis floor (client PING).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from celery import chain, chord, group

from bench import raw_celery_app as raw
from bench.measure import Sample, expect, measure
from bench.workloads import (
    CELERY_CONCURRENCY,
    CELERY_POOL,
    CHAIN,
    CHUNK,
    FAN,
    PAYLOAD,
    RAW_CHAIN,
    RAW_CHORD,
    RAW_CHUNKS,
    RAW_GROUP,
    RAW_LOOP,
    RAW_RESEND,
    WIDE,
    Sizes,
)

ROOT = Path(__file__).resolve().parent.parent
Measured = dict[tuple[str, str], Sample]


@contextmanager
def raw_celery_worker(url: str, timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A bench.raw_celery_app worker`` with the same pool settings as AetherGraph's."""
    raw.configure(url)
    with tempfile.TemporaryDirectory(prefix="bench-raw-celery-") as tmp:
        log_path = Path(tmp) / "worker.log"
        command = [
            sys.executable, "-m", "celery", "-A", "bench.raw_celery_app", "worker",
            "--pool", CELERY_POOL, "-c", str(CELERY_CONCURRENCY), "-E", "-Q", raw.QUEUE,
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


def measure_raw_celery(s: Sizes) -> Measured:
    """Every workload against the running raw worker (see :func:`raw_celery_worker`).

    The wide graph runs as ``chunks`` only: 10,000 single-task messages through a ``group``
    take about 40 s per repeat on the 2-core reference machine, which would push a full run past
    ten minutes; the fan-out's ``group`` row already shows that per-task cost.
    """

    def loop() -> None:
        x = 0
        for _ in range(s.hops):
            x = raw.noop.apply_async((x,)).get()
        expect(x, 0, "raw Celery loop")

    def chained() -> None:
        sig = chain(raw.noop.s(0), *[raw.noop.s() for _ in range(s.hops - 1)])
        expect(sig.apply_async().get(), 0, "raw Celery chain()")

    def grouped(n: int) -> None:
        values = group(raw.noop.s(i) for i in range(n)).apply_async().get()
        expect(len(values), n, "raw Celery group")  # the fan-in, done by the client

    def chunked(n: int) -> None:
        # Celery's own batching: CHUNK calls per message, results as one list per chunk
        parts = raw.noop.chunks(((i,) for i in range(n)), CHUNK).group().apply_async().get()
        expect(sum(len(part) for part in parts), n, "raw Celery chunks")

    def chorded(n: int) -> None:
        sig = chord(group(raw.noop.s(i) for i in range(n)), raw.total.s())
        expect(sig.apply_async().get(), n, "raw Celery chord")

    def payload() -> None:
        made = raw.make_blob.apply_async((s.payload,))
        used = raw.blob_size.apply_async((made.get(),))  # the usual way: through the client
        expect(used.get(), s.payload, "raw Celery payload")
        made.forget()
        used.forget()

    grouped(s.warm)
    chorded(s.warm)
    chunked(s.warm)
    return {
        (CHAIN, RAW_LOOP): measure(loop, s.repeats),
        (CHAIN, RAW_CHAIN): measure(chained, s.repeats),
        (FAN, RAW_GROUP): measure(lambda: grouped(s.fan), s.repeats, warmup=False),
        (FAN, RAW_CHORD): measure(lambda: chorded(s.fan), s.repeats, warmup=False),
        (FAN, RAW_CHUNKS): measure(lambda: chunked(s.fan), s.repeats, warmup=False),
        (WIDE, RAW_CHUNKS): measure(lambda: chunked(s.wide), s.repeats, warmup=False),
        (PAYLOAD, RAW_RESEND): measure(payload, s.repeats),
    }


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
