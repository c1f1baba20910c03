"""``aethergraph cluster``: a LocalCluster in a terminal of its own, for notebooks to connect to.

A ``LocalCluster`` started inside a notebook lives and dies with its kernel: its watchdog stops
the workers and the Redis when the kernel goes, so nothing is left behind — and nothing is left to
reattach to. Started from a terminal instead, the cluster outlives every kernel that uses it
(like ``dask scheduler`` with ``dask worker``): a kernel restart loses no run, which is what
``run(..., run_id=ID, resume=True)`` needs to pick up a run.

The command prints the line a notebook pastes to connect — a ``LocalCluster`` with no workers of
its own on this cluster's Redis and namespace, shipping notebook tools (the workers accept
them) — and runs until Ctrl-C or SIGTERM, then stops everything it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from aethergraph.cluster.local import LocalCluster
from aethergraph.errors import ConfigurationError
from aethergraph.keys import DEFAULT_QUEUE


def cluster_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument(
        "--tools", default="", help="comma-separated modules the workers also serve by name"
    )
    parser.add_argument(
        "--services", default=None, help="MODULE:FUNC that registers each worker's services"
    )
    parser.add_argument("-Q", "--queues", default=DEFAULT_QUEUE, help="comma-separated queues")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="slots per worker (1)")
    parser.add_argument(
        "--pool", choices=("prefork", "threads", "solo"), default="prefork", help="worker pool"
    )


def connect_line(cluster: LocalCluster) -> str:
    """The Python a notebook runs to use ``cluster`` (its URL holds the Redis password)."""
    return (
        f"cluster = LocalCluster(workers=0, redis_url={cluster.url!r}, "
        f"namespace={cluster.namespace!r}, ship_code=True)"
    )


def serve_cluster(args: argparse.Namespace) -> int:
    """Start the cluster, print how to connect, wait for Ctrl-C / SIGTERM, stop it."""
    if args.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {args.workers}")
    tools = [m.strip() for m in args.tools.split(",") if m.strip()]
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    cluster = LocalCluster(
        workers=args.workers,
        tools=tools,
        services=args.services,
        queues=queues,
        concurrency=args.concurrency,
        pool=args.pool,
        ship_code=True,
    )
    try:
        cluster.start()
        print(
            f"aethergraph cluster: {args.workers} worker(s) on {cluster!r}\n"
            "Connect from a notebook or script (this cluster outlives their kernels, so "
            "runs can be resumed after a restart):\n\n"
            "    from aethergraph.cluster import LocalCluster\n"
            f"    {connect_line(cluster)}\n\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        stop.wait()
    finally:
        cluster.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("aethergraph cluster: stopped", file=sys.stderr, flush=True)
    return 0
