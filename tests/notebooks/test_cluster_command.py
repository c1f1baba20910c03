"""``aethergraph cluster``: a LocalCluster in a terminal of its own that outlives the kernels
using it — so a kernel killed mid-run (its tools defined in cells) loses nothing: the next
kernel resumes the run, and every node runs exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from polling import stop_group, wait_until


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``aethergraph cluster -w 2`` running; its connect line and its process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aethergraph", "cluster", "-w", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        connect = ""
        for line in proc.stdout:  # the command prints its connect line once the workers serve
            if line.strip().startswith("cluster = LocalCluster("):
                connect = line.strip()
                break
        assert connect, proc.stderr.read() if proc.stderr else "no output"
        yield {"proc": proc, "connect": connect}
    finally:
        if proc.poll() is None:
            stop_group(proc)


CELLS = """
    import json, os, time
    from aethergraph import graph_fn, tool
    from aethergraph.cluster import LocalCluster
    {connect}

    @tool(outputs=["y"])
    def kr_slow(x: int):
        time.sleep(0.3)
        with open({log!r}, "a") as log:  # the workers' environment is the cluster's
            log.write(f"slow {{x}}\\n")
        return {{"y": x * x}}

    @graph_fn(name="kr_sweep", outputs=["total"])
    async def kr_sweep(n: int):
        handles = [kr_slow(x=i) for i in range(n)]
        return {{"total": sum([await h["y"] for h in handles])}}
"""


def _kernel() -> subprocess.Popen[str]:
    """A process standing in for a notebook kernel: its tools exist only in ``__main__``."""
    return subprocess.Popen(
        [sys.executable, "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_a_kernel_killed_mid_run_is_resumed_by_the_next_one(
    served: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    cells = textwrap.dedent(CELLS.format(connect=served["connect"], log=str(log)))
    n = 10

    first = _kernel()
    assert first.stdin is not None
    first.stdin.write(cells + f"cluster.run(kr_sweep, n={n}, run_id='kernel-restart')\n")
    first.stdin.close()
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, "first nodes", 60)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)

    second = subprocess.run(
        [sys.executable, "-"],
        input=cells
        + f"out = cluster.run(kr_sweep, n={n}, run_id='kernel-restart', resume=True)\n"
        + "reused = [node.reused for node in kr_sweep.last_graph]\n"
        + "print(json.dumps({'out': out, 'reused': reused}))\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout.strip().splitlines()[-1])
    assert report["out"] == {"total": sum(i * i for i in range(n))}
    counts = Counter(log.read_text().splitlines())
    assert counts == {f"slow {i}": 1 for i in range(n)}  # each node ran once, across kernels
    assert report["reused"].count("resumed") >= 3  # the dead kernel's finished nodes

    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "stopped" in (proc.stderr.read() if proc.stderr else "")
