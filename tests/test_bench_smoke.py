"""``python -m bench --quick`` runs every workload and writes its figures (never asserts times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_produces_every_row(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "inprocess-quick.json").read_text())
    systems = [row["system"] for row in data["rows"]]
    assert systems[0].startswith("asyncio.gather")
    assert any("async tools" in s for s in systems)
    assert any("threads" in s for s in systems)
    for row in data["rows"]:
        assert row["nodes_per_s"] > 0
        assert row["cpu_us_per_node"] > 0
        assert row["wall_s"]["min"] <= row["wall_s"]["median"] <= row["wall_s"]["max"]
    assert "nodes/s" in proc.stdout
    dist = json.loads((tmp_path / "distributed-quick.json").read_text())
    assert dist["rows"], "the distributed section produced no rows"
    for row in dist["rows"]:
        assert row["value"]["median"] > 0, row
