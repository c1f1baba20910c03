"""A killed owner's processes die with it: the watchdog behind ``RedisServer`` and ``LocalCluster``.

Each test runs the owner in a child interpreter it starts, SIGKILLs that child (no ``atexit``,
no ``close()``), and awaits the exit of the owner's processes through pidfds — so only
processes this test caused to exist are ever signalled or waited on.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aethergraph.redis_server import RedisServer
from aethergraph.watchdog import Watchdog

pytestmark = pytest.mark.skipif(
    not hasattr(os, "pidfd_open"), reason="awaiting a non-child's exit needs os.pidfd_open (Linux)"
)

ROOT = Path(__file__).resolve().parent.parent


def _await_exit(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has exited (pidfd readable); return those still alive."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue  # already gone
    try:
        remaining = dict(fds)
        while remaining:
            ready, _, _ = select.select(list(remaining), [], [], timeout)
            if not ready:
                break
            for fd in ready:
                remaining.pop(fd)
        return sorted(remaining.values())
    finally:
        for fd in fds:
            os.close(fd)


def _owner(code: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """Start an owner script that prints one JSON line of what it started, then waits."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the owner script exited with {proc.wait(30)} before reporting"
    return proc, json.loads(line)


def _kill_leftovers(pids: list[int], groups: list[int]) -> None:
    """Whatever a failed test leaves alive (only processes its owner script started)."""
    for pid in _await_exit(pids, timeout=0):
        try:
            if pid in groups:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_owner_takes_its_redis_server_and_folder_with_it() -> None:
    owner, started = _owner(
        """
        import json, threading
        from aethergraph.redis_server import RedisServer
        server = RedisServer().start()
        print(json.dumps({"pid": server.pid, "dir": str(server.directory),
                          "watchdog": server._watchdog._proc.pid}), flush=True)
        threading.Event().wait()
        """
    )
    pid, watchdog = int(started["pid"]), int(started["watchdog"])  # type: ignore[call-overload]
    folder = Path(str(started["dir"]))
    try:
        assert folder.is_dir()
        owner.kill()
        owner.wait(30)
        assert _await_exit([pid, watchdog], timeout=30) == []
        assert not folder.exists()
    finally:
        owner.kill()
        _kill_leftovers([pid, watchdog], groups=[])


def test_a_killed_cluster_owner_leaves_no_worker_or_redis_running() -> None:
    owner, started = _owner(
        """
        import json, threading
        from pathlib import Path
        from aethergraph.cluster import LocalCluster
        cluster = LocalCluster(workers=1, tools=["bench/dist_tools.py"], concurrency=1).start()
        workers = [p.pid for p in cluster.workers]
        children = [  # the prefork pool's processes, from /proc
            int(kid)
            for pid in workers
            for task in Path(f"/proc/{pid}/task").iterdir()
            for kid in (task / "children").read_text().split()
        ]
        print(json.dumps({"redis": cluster.redis_server.pid, "workers": workers,
                          "children": children, "dir": str(cluster._workdir),
                          "watchdogs": [cluster._watchdog._proc.pid,
                                        cluster.redis_server._watchdog._proc.pid]}), flush=True)
        threading.Event().wait()
        """
    )
    workers = [int(p) for p in started["workers"]]  # type: ignore[attr-defined]
    pids = [int(started["redis"]), *workers]  # type: ignore[call-overload]
    pids += [int(p) for p in started["children"]]  # type: ignore[attr-defined]
    pids += [int(p) for p in started["watchdogs"]]  # type: ignore[attr-defined]
    folder = Path(str(started["dir"]))
    try:
        assert len(pids) >= 5  # redis, the worker, a pool child, two watchdogs
        assert folder.is_dir()
        owner.kill()
        owner.wait(30)
        assert _await_exit(pids, timeout=30) == []
        assert not folder.exists()
    finally:
        owner.kill()
        _kill_leftovers(pids, groups=workers)


def test_a_clean_stop_dismisses_the_watchdog_and_it_touches_nothing(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watchdog = Watchdog()
        guard = watchdog._proc
        assert guard is not None
        watchdog.watch(sleeper.pid)
        watchdog.remove(keep)
        watchdog.dismiss()
        assert guard.returncode == 0
        assert sleeper.poll() is None  # not signalled
        assert keep.is_dir()  # not removed
    finally:
        sleeper.kill()
        sleeper.wait(10)


def test_a_stopped_server_is_forgotten_before_its_watchdog_goes() -> None:
    server = RedisServer().start()
    watchdog = server._watchdog
    assert watchdog is not None
    assert watchdog._proc is not None
    guard = watchdog._proc
    server.stop()
    assert guard.returncode == 0  # dismissed with "done", not left running
    assert server._watchdog is None
