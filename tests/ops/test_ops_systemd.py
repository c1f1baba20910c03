"""ops/systemd: the templated worker unit passes ``systemd-analyze verify`` without a warning.

verify checks that ExecStart's binary exists and is executable; on a test machine
/opt/aethergraph/venv does not, so the unit is verified as a temporary copy whose ExecStart
points at this venv's real ``aethergraph`` (the only line changed), instantiated as
``aethergraph-worker@cpu.service`` the way systemctl would. The file itself, unchanged, must
fail verify for exactly that reason and no other — which also shows verify can fail here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from ops_support import REPO, run_tool, venv_tool

UNIT = REPO / "ops" / "systemd" / "aethergraph-worker@.service"
INSTALLED = "/opt/aethergraph/venv/bin/aethergraph"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (CI installs the systemd package)",
)


def verify(folder: Path, text: str, instance: str = "cpu") -> tuple[int, str]:
    (folder / UNIT.name).write_text(text)
    done = run_tool("systemd-analyze", "verify", folder / f"aethergraph-worker@{instance}.service")
    return done.returncode, (done.stdout + done.stderr).strip()


def test_the_worker_unit_verifies_cleanly(tmp_dir: Path) -> None:
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    code, output = verify(tmp_dir, text.replace(INSTALLED, str(venv_tool("aethergraph"))))
    assert code == 0, output
    assert output == ""  # not even a warning (an unknown key is only a warning)


def test_verify_fails_on_the_missing_binary_and_nothing_else(tmp_dir: Path) -> None:
    code, output = verify(tmp_dir, UNIT.read_text())
    assert code != 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [
        f"aethergraph-worker@cpu.service: Command {INSTALLED} is not executable: "
        "No such file or directory"
    ], output


def test_the_unit_stops_gracefully_per_instance() -> None:
    values = dict(
        re.findall(r"^(\w+)=(.*)$", UNIT.read_text(), flags=re.M)  # last wins, as in systemd
    )
    assert values["EnvironmentFile"] == "/etc/aethergraph/%i.env"
    assert values["KillSignal"] == "SIGTERM"
    env = dict(
        re.findall(r"^(\w+)=(.*)$", (REPO / "ops/systemd/worker.env.example").read_text(), re.M)
    )
    grace = float(env["AETHERGRAPH_STOP_GRACE"])
    assert float(values["TimeoutStopSec"]) >= grace + 10
    for name in re.findall(r"\$\{?(\w+)\}?", values["ExecStart"]):
        assert name in env, f"ExecStart uses ${name}, which worker.env.example does not set"
    assert values["User"] != "root"
