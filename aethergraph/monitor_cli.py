"""The monitoring commands: ``aethergraph flower``, ``aethergraph status`` and ``aethergraph runs``.

``aethergraph flower [flower options]`` starts Flower on the project's own Celery app — the
configured broker (``-b`` or ``AETHERGRAPH_BROKER_URL``) and the namespace's event exchange — so
Flower shows this deployment's tasks and nothing else on the Redis DB. Every option after
``flower`` is Flower's (``--port``, ``--address``, ``--basic-auth``, ``--url-prefix``, …).
Flower is an optional extra: ``pip install 'aethergraph[flower]'``.

``aethergraph status [--json]`` prints what runs now: live workers, queue lengths and the runs
in flight (``execution/celery/status.py`` reads them).

``aethergraph runs [--json] [-n N]`` lists the recent runs from their durable records
(``execution/celery/run_record.py``): state — ``abandoned`` when its client is gone —, node
counts, start time and client; a run listed there can be watched with ``aethergraph.attach`` and
continued with ``run(..., run_id=ID, resume=True)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any

from aethergraph.cli_options import broker_option, command_settings
from aethergraph.errors import ConfigurationError
from aethergraph.settings import Settings, redact_url


def _settings_with_broker(broker: str | None, command: str) -> Settings:
    settings = command_settings(broker)
    if not settings.broker_url:
        raise ConfigurationError(
            f"aethergraph {command} needs a broker: pass -b redis://host:6379/0 or set "
            "AETHERGRAPH_BROKER_URL=redis://host:6379/0"
        )
    return settings


# -- flower ------------------------------------------------------------------------------
def flower_parser(parser: argparse.ArgumentParser) -> None:
    broker_option(parser)


def run_flower(args: argparse.Namespace, passthrough: Sequence[str]) -> int:
    """Start Flower on this project's Celery app (blocks until Flower stops)."""
    if importlib.util.find_spec("flower") is None:
        raise ConfigurationError(
            "Flower is not installed: pip install 'aethergraph[flower]' (or pip install flower)"
        )
    settings = _settings_with_broker(args.broker, "flower")
    from aethergraph.execution.celery_app import make_celery_app

    app = make_celery_app(settings)
    print(
        f"aethergraph flower: namespace {settings.namespace!r} on "
        f"{redact_url(settings.broker_url or '')}",
        file=sys.stderr,
        flush=True,
    )
    code = app.start(["flower", *passthrough])
    return int(code or 0)


# -- status ------------------------------------------------------------------------------
def status_parser(parser: argparse.ArgumentParser) -> None:
    broker_option(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def run_status(args: argparse.Namespace) -> int:
    """Print the deployment's live workers, queue lengths and runs in flight."""
    from aethergraph.execution.celery.status import read_status

    settings = _settings_with_broker(args.broker, "status")
    status = read_status(settings)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status, settings))
    return 0


def _ago(ts: float | None, now: float) -> str:
    return "-" if ts is None else f"{max(0.0, now - ts):.1f}s ago"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def format_status(status: dict[str, Any], settings: Settings) -> str:
    """The human form of :func:`read_status`'s document."""
    now = float(status["time"])
    out = [f"namespace {settings.namespace!r} on {redact_url(settings.broker_url or '')}"]
    workers = status["workers"]
    out.append(f"\nworkers: {len(workers)} live")
    if workers:
        rows = [
            [
                w["id"],
                w["host"],
                str(w["pid"]),
                f"{w['pool']}x{w['concurrency']}",
                f"{'?' if w['busy'] is None else w['busy']}/{w['concurrency']}",
                str(len(w["held"])),
                ",".join(w["queues"]),
                ",".join(w["tools"]) if len(w["tools"]) <= 4 else f"{len(w['tools'])} tools",
                _ago(w["last_heartbeat"], now),
            ]
            for w in workers
        ]
        header = ["worker", "host", "pid", "pool", "busy", "held", "queues", "tools", "heartbeat"]
        out += ["  " + line for line in _table(rows, header)]
    queues = status["queues"]
    out.append(f"\nqueues: {sum(q['queued'] for q in queues)} messages waiting")
    if queues:
        rows = [[q["name"], str(q["queued"]), str(q["workers"])] for q in queues]
        out += ["  " + line for line in _table(rows, ["queue", "queued", "workers"])]
    runs = status["runs"]
    out.append(f"\nruns in flight: {len(runs)}")
    if runs:
        states = sorted({s for r in runs for s in r["counts"]})
        rows = [
            [r["run_id"], r["graph"], r["origin"], _ago(r["started"], now).replace(" ago", "")]
            + [str(r["counts"].get(s, 0)) for s in states]
            for r in runs
        ]
        out += ["  " + line for line in _table(rows, ["run", "graph", "client", "age", *states])]
    return "\n".join(out)


# -- runs --------------------------------------------------------------------------------
def runs_parser(parser: argparse.ArgumentParser) -> None:
    broker_option(parser)
    parser.add_argument("-n", "--limit", type=int, default=20, help="newest runs shown (20)")
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def run_runs(args: argparse.Namespace) -> int:
    """Print the recent runs of the namespace from their durable records."""
    import time

    from aethergraph.execution.celery.run_record import list_runs
    from aethergraph.keys import Keys
    from aethergraph.redis_clients import sync_client

    if args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}")
    settings = _settings_with_broker(args.broker, "runs")
    client = sync_client(settings.broker_url or "")
    try:
        runs = list_runs(client, Keys(settings.namespace), args.limit)
    finally:
        client.close()
    if args.json:
        print(json.dumps(runs, indent=2, sort_keys=True))
        return 0
    print(format_runs(runs, settings, time.time()))
    return 0


def format_runs(runs: list[dict[str, Any]], settings: Settings, now: float) -> str:
    """The human form of :func:`~aethergraph.execution.celery.run_record.list_runs`."""
    out = [f"namespace {settings.namespace!r} on {redact_url(settings.broker_url or '')}"]
    out.append(f"\nruns: {len(runs)} (newest first; records kept AETHERGRAPH_RUN_TTL seconds)")
    if runs:
        rows = [
            [
                r["run_id"],
                r["graph"],
                r["state"] + (f" (resumed {r['resumes']}x)" if r["resumes"] else ""),
                _ago(r["started"], now),
                str(r["nodes"].get("done", 0)),
                str(r["nodes"].get("failed", 0)),
                str(r["nodes"].get("sent", 0)),
                r["origin"],
            ]
            for r in runs
        ]
        header = ["run", "graph", "state", "started", "done", "failed", "in flight", "client"]
        out += ["  " + line for line in _table(rows, header)]
    if any(r["state"] == "abandoned" for r in runs):
        out.append(
            "\nabandoned: its client is gone; continue it with "
            "run(<graph>, <same inputs>, run_id=<run>, resume=True)"
        )
    return "\n".join(out)
