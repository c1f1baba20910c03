"""``python -m bench --quick`` runs every workload on every system and writes table, JSON and PNG.

A smoke run: it asserts that each (workload, system) pair ran, checked its result and produced
figures, and that the ratios against raw Celery were taken — never what the times are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.workloads import (
    AG_CELERY,
    AG_LOCAL,
    ASYNCIO,
    CHAIN,
    DASK,
    FAN,
    FLOOR,
    PAYLOAD,
    RAW_CHAIN,
    RAW_CHORD,
    RAW_CHUNKS,
    RAW_GROUP,
    RAW_LOOP,
    RAW_RESEND,
    REDIS_PING,
    WIDE,
)

ROOT = Path(__file__).resolve().parent.parent
PEERS = [ASYNCIO, AG_LOCAL, DASK, AG_CELERY]
EXPECTED = {
    CHAIN: [*PEERS, RAW_LOOP, RAW_CHAIN],
    FAN: [*PEERS, RAW_GROUP, RAW_CHORD, RAW_CHUNKS],
    WIDE: [*PEERS, RAW_CHUNKS],
    PAYLOAD: [*PEERS, RAW_RESEND],
    FLOOR: [REDIS_PING],
}


def test_bench_quick_runs_every_workload_on_every_system(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((tmp_path / "bench-quick.json").read_text())
    got: dict[str, list[str]] = {}
    for row in data["rows"]:
        got.setdefault(row["workload"], []).append(row["system"])
        assert row["repeats"] == data["meta"]["sizes"]["repeats"], row["system"]
        v = row["value"]
        assert 0 < v["min"] <= v["median"] <= v["max"], (row["workload"], row["system"], v)
        assert row["client_cpu_us_per_task"] > 0, (row["workload"], row["system"])
        assert len(row["raw"]["wall_s"]) == row["repeats"]
    assert {w: sorted(s) for w, s in got.items()} == {w: sorted(s) for w, s in EXPECTED.items()}

    # bytes through the client are measured: the raw Celery payload comes back and goes out
    # again through the client; AetherGraph's moves worker to worker by reference
    payload = {r["system"]: r for r in data["rows"] if r["workload"] == PAYLOAD}
    size = data["meta"]["sizes"]["payload"]
    assert payload[RAW_RESEND]["client_bytes"] > 2 * size
    assert payload[AG_CELERY]["client_bytes"] < size / 10
    # peak client memory is measured for the wide graph (Linux: VmHWM)
    wide = [r for r in data["rows"] if r["workload"] == WIDE]
    if sys.platform.startswith("linux"):
        assert all(r["peak_rss_bytes"]["median"] > 0 for r in wide), wide

    # every non-raw system is compared with every raw Celery variant of its workload
    pairs = {(q["workload"], q["system"], q["versus"]) for q in data["ratios"]}
    for workload, systems in EXPECTED.items():
        bases = [s for s in systems if s.startswith("raw Celery")]
        for system in (s for s in systems if not s.startswith("raw Celery")):
            for base in bases:
                assert (workload, system, base) in pairs, (workload, system, base)
    assert data["furthest"]["system"] == AG_CELERY

    assert (tmp_path / "bench-quick.png").read_bytes().startswith(b"\x89PNG")
    for workload_title in ("chain of", "fan-out of", "wide graph of", "payload of", "Redis floor"):
        assert workload_title in proc.stdout
