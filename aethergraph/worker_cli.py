"""``aethergraph worker``: a Celery worker that serves AetherGraph tools.

    aethergraph worker --tools pkg.tools[,pkg.more] --services pkg.services:setup \\
        -Q cpu,gpu -c 8 --pool prefork [any other celery worker flag]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

from aethergraph.errors import ConfigurationError
from aethergraph.execution.celery_app import make_celery_app
from aethergraph.execution.worker import WorkerRuntime, load_bootstrap, load_tools
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.settings import get_settings

POOLS = ("prefork", "threads", "solo")


def worker_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="aethergraph worker")
    parser.add_argument(
        "--tools", required=True, help="comma-separated modules whose @tool functions to serve"
    )
    parser.add_argument(
        "--services", default=None, help="MODULE:FUNC that registers this worker's services"
    )
    parser.add_argument(
        "-Q",
        "--queues",
        default=DEFAULT_QUEUE,
        help=f"comma-separated queues (default: {DEFAULT_QUEUE})",
    )
    parser.add_argument("-c", "--concurrency", type=int, default=None, help="processes/threads")
    parser.add_argument("--pool", choices=POOLS, default="prefork", help="execution pool")
    parser.add_argument("-n", "--hostname", default=None, help="worker node name")
    parser.add_argument("-l", "--loglevel", default="INFO", help="celery log level")
    parser.add_argument(
        "--async-concurrency",
        type=int,
        default=None,
        help="async nodes of one message run at once per slot (default 1, or "
        "AETHERGRAPH_ASYNC_CONCURRENCY; see docs/distributed.md)",
    )
    return parser


def run_worker(args: argparse.Namespace, passthrough: Sequence[str] = ()) -> int:
    settings = get_settings()
    if not settings.broker_url:
        raise ConfigurationError(
            "aethergraph worker needs a broker: set AETHERGRAPH_BROKER_URL=redis://host:6379/0"
        )
    modules = [m.strip() for m in args.tools.split(",") if m.strip()]
    if not modules:
        raise ConfigurationError("--tools needs at least one module")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current project is importable
    tools = load_tools(modules)
    if not tools:
        raise ConfigurationError(f"no @tool found in {modules}")
    keys = Keys(settings.namespace)
    queues = [keys.tool_queue(q.strip()) for q in args.queues.split(",") if q.strip()]
    concurrency = args.concurrency or os.cpu_count() or 1
    app = make_celery_app(settings)
    WorkerRuntime(
        app,
        settings,
        tools=tools,
        bootstrap=load_bootstrap(args.services),
        queues=queues,
        pool=args.pool,
        concurrency=concurrency,
        log_level=args.loglevel,
        async_concurrency=args.async_concurrency,
    )
    name = args.hostname or f"aethergraph-{os.getpid()}@{socket.gethostname()}"
    argv = [
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "--pool",
        args.pool,
        "-n",
        name,
        "-l",
        args.loglevel,
        "-E",
        *passthrough,
    ]
    print(f"aethergraph worker {name}: tools {sorted(tools)} on queues {queues}", flush=True)
    app.worker_main(argv=argv)
    return 0
