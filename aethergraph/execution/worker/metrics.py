"""A worker's Prometheus metrics: what its nodes do, per tool, at ``http://HOST:PORT/metrics``.

``aethergraph worker --metrics-port 9808`` (or ``AETHERGRAPH_METRICS_PORT``) serves:

==========================================  =========  ==========================================
metric                                      type       meaning
==========================================  =========  ==========================================
``aethergraph_nodes_started_total``         counter    nodes this worker began (a pack's nodes
                                                       count when the pack begins)
``aethergraph_nodes_succeeded_total``       counter    attempts that returned outputs
``aethergraph_nodes_failed_total``          counter    attempts that failed for good
``aethergraph_nodes_retried_total``         counter    failed attempts the client sends again
``aethergraph_node_run_seconds``            histogram  a tool call's wall time
``aethergraph_node_queue_wait_seconds``     histogram  from the client's send to the tool's start
``aethergraph_nodes_in_flight``             gauge      nodes held now (running, or waiting in
                                                       their pack)
``aethergraph_worker_up``                   gauge      1 while the worker serves (labels: worker,
                                                       pool, concurrency, queues)
==========================================  =========  ==========================================

Every node metric has a ``tool`` label. Failed and retried follow the same rule as Flower
(``reporting.will_retry``), so the two never disagree. Queue wait compares the client's clock
with the worker's: keep hosts in NTP sync.

**Prefork.** Nodes run in pool processes, the endpoint is served by the main one, so the
metrics use prometheus_client's multiprocess mode: each process writes its values to files in
one folder and the endpoint adds them up. The worker points ``PROMETHEUS_MULTIPROC_DIR`` at a
temporary folder of its own (removed when it exits) unless that variable is already set — it
must be set before ``prometheus_client`` creates a metric, so :class:`WorkerMetrics` does it in
the worker's own process before anything else imports prometheus_client. A pool process that
exits is marked dead, so its in-flight gauge stops counting.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from typing import Any

from aethergraph.errors import ConfigurationError

log = logging.getLogger("aethergraph.worker")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: seconds: tools from a millisecond to a day
RUN_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class WorkerMetrics:
    """The metrics of one ``aethergraph worker`` and their HTTP endpoint."""

    def __init__(self, port: int, address: str = "0.0.0.0") -> None:
        if not 0 < port < 65536:
            raise ConfigurationError(f"--metrics-port must be a TCP port (1-65535), got {port}")
        self.port = port
        self.address = address
        self._check_port()  # a port taken is a one-line error now, not a log line later
        self._owned_dir: str | None = None
        if not os.environ.get(MULTIPROC_ENV):
            # this worker's own process, before any metric exists and before the pool forks
            self._owned_dir = tempfile.mkdtemp(prefix="aethergraph-metrics-")
            os.environ[MULTIPROC_ENV] = self._owned_dir
            atexit.register(self.close)
        from prometheus_client import Counter, Gauge, Histogram

        self.started = Counter("aethergraph_nodes_started", "Nodes this worker began.", ["tool"])
        self.succeeded = Counter(
            "aethergraph_nodes_succeeded", "Node attempts that returned outputs.", ["tool"]
        )
        self.failed = Counter(
            "aethergraph_nodes_failed", "Node attempts that failed for good.", ["tool"]
        )
        self.retried = Counter(
            "aethergraph_nodes_retried", "Failed node attempts the client sends again.", ["tool"]
        )
        self.run_seconds = Histogram(
            "aethergraph_node_run_seconds", "Wall time of a tool call.", ["tool"],
            buckets=RUN_BUCKETS,
        )  # fmt: skip
        self.wait_seconds = Histogram(
            "aethergraph_node_queue_wait_seconds",
            "Seconds from the client's send to the tool's start.",
            ["tool"],
            buckets=WAIT_BUCKETS,
        )
        self.in_flight = Gauge(
            "aethergraph_nodes_in_flight",
            "Nodes this worker holds now (running, or waiting in their pack).",
            ["tool"],
            multiprocess_mode="livesum",
        )
        self.up = Gauge(
            "aethergraph_worker_up",
            "1 while the worker serves.",
            ["worker", "pool", "concurrency", "queues"],
            multiprocess_mode="livemax",
        )

    def _error(self, exc: OSError) -> ConfigurationError:
        return ConfigurationError(
            f"cannot serve metrics on {self.address}:{self.port}: {exc}; give each worker on a "
            "host its own --metrics-port (AETHERGRAPH_METRICS_PORT)"
        )

    def _check_port(self) -> None:
        """Bind the port once, as the endpoint will (the worker has not started yet)."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.address, self.port))
            except OSError as exc:
                raise self._error(exc) from exc

    def serve(self, *, worker: str, pool: str, concurrency: int, queues: Sequence[str]) -> None:
        """Start the endpoint (main process, once the pool runs: the pool processes do not
        inherit its socket or thread) and say the worker is up."""
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        try:
            start_http_server(self.port, addr=self.address, registry=registry)
        except OSError as exc:  # taken since the check: the worker serves on without metrics
            log.error("%s", self._error(exc), exc_info=True)
            return
        self.up.labels(worker, pool, str(concurrency), ",".join(queues)).set(1)

    # -- nodes (pool processes) --------------------------------------------------------
    def began(self, tool: str, nodes: int) -> None:
        self.started.labels(tool).inc(nodes)
        self.in_flight.labels(tool).inc(nodes)

    def finished(self, tool: str, outcome: Any, *, sent: Any, retried: bool) -> None:
        """One attempt ended: count it, time it, and take it off the in-flight gauge.

        ``sent``: the client's send time of the attempt's message (epoch seconds)."""
        self.in_flight.labels(tool).dec()
        if outcome.failure is None:
            self.succeeded.labels(tool).inc()
        elif retried:
            self.retried.labels(tool).inc()
        else:
            self.failed.labels(tool).inc()
        started, ended = outcome.started_at, outcome.finished_at
        if started is not None and ended is not None:
            self.run_seconds.labels(tool).observe(max(0.0, ended - started))
            if isinstance(sent, (int, float)):
                self.wait_seconds.labels(tool).observe(max(0.0, started - sent))

    def not_run(self, tool: str, nodes: int) -> None:
        """Nodes of a message that ended without running them (revoked, client gone)."""
        if nodes > 0:
            self.in_flight.labels(tool).dec(nodes)

    def process_exited(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Remove the folder of the values (only one this worker made)."""
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            if os.environ.get(MULTIPROC_ENV) == self._owned_dir:
                del os.environ[MULTIPROC_ENV]
            self._owned_dir = None
