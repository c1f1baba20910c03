"""``aethergraph worker``: a Celery worker that serves AetherGraph tools.

    aethergraph worker --tools pkg.tools[,pkg.more] --services pkg.services:setup \\
        -b redis://host:6379/0 -Q cpu,gpu -c 8 --pool prefork [any other celery worker flag]

Flags it does not know go to ``celery worker`` — after being checked against celery's own
option table here, so a typo is a one-line usage error (exit 2) before anything is imported or
started, not a click traceback from deep inside Celery.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

import click

from aethergraph.cli_options import broker_option, command_settings
from aethergraph.errors import ConfigurationError
from aethergraph.execution.celery_app import make_celery_app
from aethergraph.execution.shipping import SHIPPED_TASK
from aethergraph.execution.worker import WorkerRuntime, load_bootstrap, load_tools
from aethergraph.execution.worker.shipped import shipped_task_spec
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.settings import redact_url

POOLS = ("prefork", "threads", "solo")

_DETACH_REFUSED = (
    "aethergraph worker does not detach (--detach/-D): it runs in the foreground, so that the "
    "supervisor that started it (systemd, Docker/Kubernetes, Slurm/PBS, or a shell job) sees it "
    "exit, restarts it, and stops it with SIGTERM (a warm shutdown). For a background worker on "
    "a shell: nohup aethergraph worker ... --logfile worker.log --pidfile worker.pid &"
)


def worker_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="aethergraph worker")
    parser.add_argument(
        "--tools",
        default="",
        help="comma-separated modules whose @tool functions to serve (optional with --accept-code)",
    )
    parser.add_argument(
        "--accept-code",
        action="store_true",
        default=None,
        help="also run tools whose code clients ship from notebooks (cloudpickle, read from the "
        "broker: only where no one else can write to it; or AETHERGRAPH_ACCEPT_CODE=1; see "
        "docs/notebooks.md)",
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
    broker_option(parser)
    parser.add_argument(
        "--async-concurrency",
        type=int,
        default=None,
        help="async nodes of one message run at once per slot (default 1, or "
        "AETHERGRAPH_ASYNC_CONCURRENCY; see docs/distributed.md)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds running nodes get to finish after SIGTERM before their messages are "
        "handed back (default 25, or AETHERGRAPH_STOP_GRACE; see docs/reliability.md)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port at /metrics (default: off, or "
        "AETHERGRAPH_METRICS_PORT; see docs/monitoring.md)",
    )
    return parser


def check_celery_options(passthrough: Sequence[str]) -> None:
    """Refuse flags ``celery worker`` would reject, and ``--detach``, before anything starts.

    Parsing uses celery's own ``worker`` command (its click parser, without running the
    command), so what is accepted here is exactly what celery accepts, for any celery version.
    Values are checked by celery itself later; :func:`run_worker` turns a rejection there into
    the same kind of error.
    """
    from celery.bin.worker import worker as celery_worker

    parser = celery_worker.make_parser(click.Context(celery_worker, info_name="worker"))
    try:
        options, extra, _order = parser.parse_args(list(passthrough))
    except click.UsageError as exc:
        raise ConfigurationError(
            f"celery worker rejects {' '.join(passthrough)!r}: {exc.format_message()} "
            "(aethergraph worker passes flags it does not know to celery worker; see "
            "'aethergraph worker --help' and 'celery worker --help')"
        ) from exc
    if extra:
        raise ConfigurationError(
            f"unexpected argument(s) {' '.join(extra)!r}: aethergraph worker takes no "
            "positional arguments (modules go in --tools MODULE[,MODULE])"
        )
    if options.get("detach"):
        raise ConfigurationError(_DETACH_REFUSED)


def run_worker(args: argparse.Namespace, passthrough: Sequence[str] = ()) -> int:
    settings = command_settings(getattr(args, "broker", None))
    if not settings.broker_url:
        raise ConfigurationError(
            "aethergraph worker needs a broker: pass -b redis://host:6379/0 or set "
            "AETHERGRAPH_BROKER_URL=redis://host:6379/0"
        )
    check_celery_options(passthrough)
    if args.accept_code:
        settings = settings.model_copy(update={"accept_code": True})
    modules = [m.strip() for m in args.tools.split(",") if m.strip()]
    if not modules and not settings.accept_code:
        raise ConfigurationError(
            "aethergraph worker needs --tools MODULE[,MODULE] (the modules whose @tool "
            "functions it serves), or --accept-code to run tools shipped from notebooks"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current project is importable
    tools = load_tools(modules) if modules else {}
    if modules and not tools:
        raise ConfigurationError(f"no @tool found in {modules}")
    if settings.accept_code:
        tools[SHIPPED_TASK] = shipped_task_spec()
    keys = Keys(settings.namespace)
    queues = [keys.tool_queue(q.strip()) for q in args.queues.split(",") if q.strip()]
    concurrency = args.concurrency or os.cpu_count() or 1
    app = make_celery_app(settings)
    name = args.hostname or f"aethergraph-{os.getpid()}@{socket.gethostname()}"
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
        grace=args.grace,
        name=name,
        metrics_port=args.metrics_port or settings.metrics_port,
    )
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
    print(
        f"aethergraph worker {name}: tools {sorted(tools)} on queues {queues} "
        f"(broker {redact_url(settings.broker_url or '')})",
        flush=True,
    )
    try:
        app.worker_main(argv=argv)
    except click.UsageError as exc:  # a value celery rejects (names were checked above)
        raise ConfigurationError(f"celery worker: {exc.format_message()}") from exc
    return 0
