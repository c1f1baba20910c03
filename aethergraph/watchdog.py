"""Child processes that do not outlive their owner: a small watchdog process per owner.

A ``LocalCluster`` or ``RedisServer`` stops its processes in ``close()`` / ``stop()`` and at
interpreter exit. A SIGKILLed script (an OOM kill, ``kill -9``, a notebook kernel killed by
its frontend) runs neither, and its ``redis-server`` and workers used to keep running,
re-parented to init, until someone found them.

So each owner starts a watchdog: this file, run by the same interpreter with the standard
library only (``-I -S``). The owner holds the write end of the watchdog's stdin and tells it,
one line each, which processes to stop and which folders to remove. When the owner dies, the
kernel closes that pipe; the watchdog reads end-of-file and stops what it was told (SIGTERM,
then SIGKILL after a grace period; a process group when asked), then removes the folders. A
clean ``close()`` says ``done`` first, and the watchdog exits without touching anything.

Why a pipe and not ``PR_SET_PDEATHSIG``: that signal fires when the *thread* that started the
child exits, which kills a cluster started from a helper thread (as a notebook's event-loop
helper) while its owner lives on; and it is Linux-only. A process is identified by its pid
*and* its start time, so a pid the system has reused since is never signalled.

An owner may also leave commands to run on its death (``command``): a ``SlurmCluster`` leaves
``scancel <job>`` for each job it submitted, so a killed notebook kernel leaves no batch job
holding nodes until its walltime. Each runs once, with a time limit, after the processes stop.

A process that forks while a watchdog runs, without ``exec``, keeps a copy of the write end
(Python's own subprocesses do not inherit it: it is not inheritable); the watchdog then acts
when the last copy closes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE = 5.0  # seconds between SIGTERM and SIGKILL when the owner died
COMMAND_TIMEOUT = 30.0  # seconds a command left by the owner may take


def _start_time(pid: int) -> str:
    """The process's start time (``/proc/<pid>/stat`` field 22), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


class Watchdog:
    """The owner's side: start the watchdog, tell it what to clean up, dismiss it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the owner's terminal must not stop it first
        )

    def _say(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the watchdog is gone: nothing to tell
            self._proc = None

    def watch(self, pid: int, *, group: bool = False) -> None:
        """Stop ``pid`` (its whole process group if ``group``) if the owner dies."""
        self._say(f"pid {pid} {int(group)} {_start_time(pid) or '-'}")

    def forget(self, pid: int) -> None:
        """``pid`` was stopped by its owner: leave it alone."""
        self._say(f"forget {pid}")

    def remove(self, path: Path) -> None:
        """Remove the folder ``path`` if the owner dies."""
        self._say(f"dir {os.fspath(path)}")

    def command(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Run ``argv`` (with ``env`` on top of the environment) if the owner dies; ``key``
        names it for :meth:`uncommand` (one word, no whitespace)."""
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"watchdog command key must be one word, got {key!r}")
        self._say(f"cmd {key} {json.dumps({'argv': argv, 'env': env or {}})}")

    def uncommand(self, key: str) -> None:
        """The command left as ``key`` is no longer needed (its job ended)."""
        self._say(f"uncmd {key}")

    def dismiss(self) -> None:
        """The owner cleaned up itself: the watchdog exits and touches nothing."""
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the watchdog process ------------------------------------------------------------------
def _alive(pid: int, started: str) -> bool:
    if started != "-" and _start_time(pid) != started:
        return False  # gone, or the pid now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, though not ours to signal
        pass
    return True


def _signal(pid: int, group: bool, sig: int) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _run_commands(commands: dict[str, str]) -> None:
    for order in commands.values():
        try:
            spec = json.loads(order)
            subprocess.run(
                [str(a) for a in spec["argv"]],
                env={**os.environ, **spec["env"]},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
            continue  # nobody is left to tell: do the rest


def _clean_up(watched: dict[int, tuple[bool, str]], folders: list[str]) -> None:
    targets = {pid: how for pid, how in watched.items() if _alive(pid, how[1])}
    for pid, (group, _) in targets.items():
        _signal(pid, group, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while targets and time.monotonic() < deadline:
        targets = {pid: how for pid, how in targets.items() if _alive(pid, how[1])}
        time.sleep(0.05)  # not our children: there is no exit to wait on, only to poll
    for pid, (group, _) in targets.items():
        _signal(pid, group, signal.SIGKILL)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    """Read orders from stdin until ``done`` (exit) or end-of-file (the owner died)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: dict[int, tuple[bool, str]] = {}
    folders: list[str] = []
    commands: dict[str, str] = {}
    for raw in sys.stdin.buffer:
        word, _, rest = raw.decode().strip().partition(" ")
        if word == "done":
            return 0
        if word == "pid":
            pid, group, started = rest.split()
            watched[int(pid)] = (group == "1", started)
        elif word == "forget":
            watched.pop(int(rest), None)
        elif word == "dir":
            folders.append(rest)
        elif word == "cmd":
            key, _, spec = rest.partition(" ")
            commands[key] = spec
        elif word == "uncmd":
            commands.pop(rest, None)
    _clean_up(watched, folders)
    _run_commands(commands)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
