"""The ``aethergraph`` command line: demo, run, worker, cluster, flower, status and runs.

Also ``python -m aethergraph`` (see ``__main__.py``). Every mistake of the user's ends in one
``error: …`` line on stderr and exit code 2; URLs are shown with their passwords redacted.

``run`` and ``demo`` show a progress bar on stderr when it is a terminal, and one line per
finished node when it is not (a log). ``--progress`` asks for the live progress anywhere (in a log:
a line every ~10 s and a summary, which suits runs of many nodes); ``--no-progress`` shows none.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

import aethergraph
from aethergraph.cli_options import broker_option, command_settings
from aethergraph.errors import AetherGraphError, BrokerUnavailableError, ConfigurationError
from aethergraph.monitor_cli import (
    flower_parser,
    run_flower,
    run_runs,
    run_status,
    runs_parser,
    status_parser,
)
from aethergraph.registry import current_registry
from aethergraph.runner import run
from aethergraph.scheduling.events import NodeEvent, RunEvent
from aethergraph.settings import Settings, redact_url
from aethergraph.tracing.graph_fn import GraphFunction


def _load_graph(target: str) -> tuple[GraphFunction, str]:
    """``pkg.module:graph`` or ``path/to/file.py:graph`` → the GraphFunction."""
    if ":" not in target:
        raise ConfigurationError(
            f"expected MODULE_OR_FILE:GRAPH (e.g. examples/quickstart.py:stats), got {target!r}"
        )
    where, name = target.rsplit(":", 1)
    tools_before = len(current_registry().list("tool"))
    if where.endswith(".py") or Path(where).is_file():
        path = Path(where).resolve()
        if not path.is_file():
            raise ConfigurationError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    obj = getattr(module, name, None)
    if not isinstance(obj, GraphFunction):
        raise ConfigurationError(f"{where} has no @graph_fn named {name!r}")
    tools = str(Path(where).resolve()) if where.endswith(".py") else where
    if len(current_registry().list("tool")) == tools_before:
        tools = ""  # the target defines no tools: nothing for workers to serve
    return obj, tools


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigurationError(f"--input expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw  # plain strings need no quotes
    return inputs


class _NodeLines:
    """One status line per finished node on stderr: the default when stderr is no terminal
    (a log), where a redrawn bar would be noise; ``--quiet`` or ``--no-progress`` turn it off."""

    def __init__(self) -> None:
        self.total = 0
        self.finished = 0

    def __call__(self, event: Any) -> None:
        if isinstance(event, NodeEvent):
            if event.type == "added":
                self.total += 1
            elif event.type in ("done", "failed", "skipped", "cancelled"):
                self.finished += 1
                mark = {"done": "ok", "failed": "FAILED"}.get(event.type, event.type)
                print(
                    f"  [{self.finished}/{self.total}] {event.node_id:<24} {mark}",
                    file=sys.stderr,
                )
        elif isinstance(event, RunEvent) and event.type == "run_finished":
            print(f"run {event.run_id[:12]} {event.status}: {event.counts}", file=sys.stderr)


def _execute(gf: GraphFunction, inputs: dict[str, Any], tools: str, args: Any) -> int:
    """Run in-process (--local), on the broker (-b or the settings), or on a LocalCluster.

    A target that registers no ``@tool`` has nothing for workers to serve, so it runs
    in-process whatever the broker settings say (its body still runs; there are no nodes).
    """
    if args.local or not tools:
        if not args.local:
            print("no @tool in the target: running in-process", file=sys.stderr)
        return _run_and_print(gf, inputs, "local", args)
    settings = command_settings(args.broker)
    if settings.broker_url:
        return _run_on_broker(gf, inputs, settings, args)
    from aethergraph.cluster import LocalCluster

    started = time.perf_counter()
    with LocalCluster(workers=args.workers, tools=[tools], concurrency=1) as cluster:
        print(
            f"LocalCluster: {args.workers} worker processes on {redact_url(cluster.url)} "
            f"(up in {time.perf_counter() - started:.1f}s)",
            file=sys.stderr,
        )
        return _run_and_print(gf, inputs, cluster.executor, args)


def _run_on_broker(gf: GraphFunction, inputs: dict[str, Any], settings: Settings, args: Any) -> int:
    """Run on the ``aethergraph worker`` pools of ``settings.broker_url``.

    The executor gets this command's settings explicitly (``-b`` is never written to the
    environment). A broker that cannot be reached is the user's to fix, so it is an error line
    naming the (redacted) URL, not a traceback.
    """
    from aethergraph.execution.celery import CeleryExecutor

    url = redact_url(settings.broker_url or "")
    try:
        return _run_and_print(gf, inputs, CeleryExecutor(settings=settings), args)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        # ConnectionError includes AuthenticationError (a wrong or missing password)
        raise BrokerUnavailableError(
            f"cannot reach the broker at {url}: {exc} Start Redis there, or point -b/--broker "
            "(or AETHERGRAPH_BROKER_URL) at a running one; --local runs without a broker."
        ) from exc


def _progress(args: Any) -> tuple[bool, _NodeLines | None]:
    """The run's ``progress=`` and per-node line listener: ``--progress``/``--no-progress``
    when given; else (unless ``--quiet``) the live bar on a terminal, per-node lines in a log."""
    if args.progress is not None:
        return bool(args.progress), None
    if args.quiet:
        return False, None
    if sys.stderr.isatty():
        return True, None
    return False, _NodeLines()


def _run_and_print(gf: GraphFunction, inputs: dict[str, Any], executor: Any, args: Any) -> int:
    quiet, mermaid = args.quiet, args.mermaid
    started = time.perf_counter()
    progress, lines = _progress(args)
    result = run(gf, inputs, executor=executor, progress=progress, on_event=lines)
    elapsed = time.perf_counter() - started
    print(json.dumps(result, indent=2, default=str))
    graph = gf.last_graph
    assert graph is not None  # run() records it
    if not quiet:
        print(f"{len(graph)} nodes in {elapsed:.2f}s", file=sys.stderr)
    if mermaid:
        print(graph.to_mermaid())
    return 0


def _where_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (unless --progress), no per-node lines, no 'N nodes in Xs' line",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress on stderr: a bar on a terminal, a line every ~10 s in a log "
        "(default: a bar on a terminal, per-node lines otherwise)",
    )
    parser.add_argument("--mermaid", action="store_true", help="print the graph as Mermaid")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--local", action="store_true", help="run in-process instead of on Celery workers"
    )
    broker_option(where)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the LocalCluster started when no broker is configured",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aethergraph", description="Run AetherGraph graphs from the command line."
    )
    parser.add_argument(
        "--version", action="version", version=f"aethergraph {aethergraph.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo parameter sweep")
    _where_options(demo)
    run_p = sub.add_parser("run", help="run a graph: aethergraph run MODULE_OR_FILE:GRAPH")
    run_p.add_argument("target", help="pkg.module:graph or path/to/file.py:graph")
    run_p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a graph input; VALUE is parsed as JSON when it can be (repeatable)",
    )
    _where_options(run_p)
    worker_p = sub.add_parser(
        "worker", help="serve tools as a Celery worker (other celery worker flags pass through)"
    )
    from aethergraph.cluster.serve import cluster_parser  # lazy, like the worker's: Celery
    from aethergraph.worker_cli import worker_parser  # lazy: it imports Celery and the runtime

    worker_parser(worker_p)
    flower_p = sub.add_parser(
        "flower", help="Flower on this project's Celery app and broker (flower options follow)"
    )
    flower_parser(flower_p)
    status_p = sub.add_parser("status", help="live workers, queue lengths and runs in flight")
    status_parser(status_p)
    runs_p = sub.add_parser("runs", help="recent runs from their durable records")
    runs_parser(runs_p)
    cluster_p = sub.add_parser(
        "cluster", help="a LocalCluster in this terminal, for notebooks to connect to"
    )
    cluster_parser(cluster_p)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("worker", "flower"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "worker":
            from aethergraph.worker_cli import run_worker

            return run_worker(args, extra)
        if args.command == "flower":
            return run_flower(args, extra)
        if args.command == "status":
            return run_status(args)
        if args.command == "runs":
            return run_runs(args)
        if args.command == "cluster":
            from aethergraph.cluster.serve import serve_cluster

            return serve_cluster(args)
        if args.command == "demo":
            from aethergraph.demo import DEFAULT_TEMPERATURES, demo_sweep

            inputs = {"temperatures": DEFAULT_TEMPERATURES, "target": 10.0}
            return _execute(demo_sweep, inputs, "aethergraph.demo", args)
        gf, tools = _load_graph(args.target)
        return _execute(gf, _parse_inputs(args.input), tools, args)
    except AetherGraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
