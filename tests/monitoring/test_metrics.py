"""A worker's Prometheus endpoint: per-tool counters, histograms and gauges, summed over its
prefork pool processes, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor_tools import m_fails, m_retries, m_squares
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from aethergraph import run
from aethergraph.errors import ToolError
from aethergraph.redis_server import free_port

HERE = Path(__file__).resolve().parent
TOOLS = str(HERE / "monitor_tools.py")


@pytest.fixture(scope="module")
def metered(redis_url: str) -> Iterator[tuple[Any, str]]:
    """One prefork worker with two pool processes, its metrics on a free port."""
    from aethergraph.cluster import LocalCluster

    port = free_port()
    with LocalCluster(
        workers=1,
        tools=[TOOLS],
        concurrency=2,
        redis_url=redis_url,
        env={"PYTHONPATH": str(HERE), "AETHERGRAPH_METRICS_PORT": str(port)},
    ) as cluster:
        yield cluster, f"http://127.0.0.1:{port}/metrics"


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_the_nodes_did(metered: tuple[Any, str]) -> None:
    cluster, url = metered
    with pytest.raises(ToolError):
        run(m_fails, x=2, executor=cluster.executor)
    assert run(m_retries, x=4, executor=cluster.executor) == {"y": 4}
    assert run(m_squares, n=5, executor=cluster.executor) == {"ys": [0, 1, 4, 9, 16]}

    def settled() -> dict[Any, float] | None:
        samples = _scrape(url)
        done = _value(samples, "aethergraph_nodes_succeeded_total", tool="m_square")
        return samples if done == 5 else None

    samples = wait_until(settled, "5 m_square successes on the metrics endpoint")
    counter = "aethergraph_nodes_{}_total"
    assert _value(samples, counter.format("started"), tool="m_explode") == 1
    assert _value(samples, counter.format("failed"), tool="m_explode") == 1
    assert _value(samples, counter.format("succeeded"), tool="m_explode") == 0
    assert _value(samples, counter.format("retried"), tool="m_flaky") == 1
    assert _value(samples, counter.format("succeeded"), tool="m_flaky") == 1
    assert _value(samples, counter.format("failed"), tool="m_flaky") == 0
    assert _value(samples, counter.format("started"), tool="m_square") == 5
    assert _value(samples, "aethergraph_node_run_seconds_count", tool="m_square") == 5
    assert _value(samples, "aethergraph_node_queue_wait_seconds_count", tool="m_square") == 5
    assert _value(samples, "aethergraph_node_run_seconds_sum", tool="m_square") > 0
    for tool in ("m_square", "m_explode", "m_flaky"):
        assert _value(samples, "aethergraph_nodes_in_flight", tool=tool) == 0
    up = [v for (name, _), v in samples.items() if name == "aethergraph_worker_up"]
    assert up == [1.0]


def test_a_second_worker_on_the_same_port_says_how_to_fix_it(
    metered: tuple[Any, str], redis_url: str
) -> None:
    import os
    import subprocess
    import sys

    cluster, url = metered
    port = url.rsplit(":", 1)[1].split("/")[0]
    env = {**os.environ, "PYTHONPATH": str(HERE), "AETHERGRAPH_NAMESPACE": cluster.namespace}
    done = subprocess.run(
        [sys.executable, "-m", "aethergraph", "worker", "--tools", TOOLS, "-b", cluster.url,
         "--pool", "solo", "--metrics-port", port, "-l", "WARNING"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"cannot serve metrics on 0.0.0.0:{port}" in done.stdout + done.stderr
    assert "its own --metrics-port" in done.stdout + done.stderr
