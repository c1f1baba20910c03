"""A plain Celery app for the raw-Celery side of the distributed benchmark.

Same configuration values as AetherGraph's workers (:func:`celery_config`: prefetch 1, acks_late,
JSON only, task events), with three overrides: its own Redis DB as broker and result backend, its
own queue, and results kept (raw Celery returns values through the result backend; AetherGraph
pushes outcomes to its own result list instead). Served by::

    BENCH_RAW_BROKER_URL=redis://127.0.0.1:PORT/1 \\
        celery -A bench.raw_celery_app worker --pool prefork -c 2 -E -Q bench-raw
"""

from __future__ import annotations

import os
import random
from typing import Any

from celery import Celery

from aethergraph.execution.celery_app import celery_config
from aethergraph.settings import Settings

QUEUE = "bench-raw"
URL_ENV = "BENCH_RAW_BROKER_URL"

app = Celery("bench_raw", set_as_current=False)


def configure(url: str) -> Celery:
    """Point the app at ``url`` (broker and result backend) with AetherGraph's settings."""
    config: dict[str, Any] = celery_config(Settings(broker_url=url, result_backend=url))
    config.update(task_default_queue=QUEUE, task_ignore_result=False)
    app.conf.update(config)
    return app


if os.environ.get(URL_ENV):
    configure(os.environ[URL_ENV])


@app.task(name="bench_raw.noop")
def noop(x: int) -> int:
    return x


@app.task(name="bench_raw.total")
def total(xs: list[int]) -> int:
    return len(xs)


@app.task(name="bench_raw.make_blob")
def make_blob(size: int) -> bytes:
    return random.randbytes(size)


@app.task(name="bench_raw.blob_size")
def blob_size(blob: bytes) -> int:
    return len(blob)
