"""How every figure is taken: repeats, wall and CPU time, client bytes, peak client memory.

All systems are measured by the same :func:`measure`, in this process (the client):

* **wall**: ``time.perf_counter`` around one run of the workload;
* **client CPU**: ``time.process_time`` of the whole process (all threads, so AetherGraph's
  runtime thread, Celery's result consumer and Dask's in-process scheduler are included);
* **client bytes**: bytes sent and received through every socket of this process, counted at
  the ``socket.socket`` methods while the workload runs (:class:`SocketBytes`) — measured, not
  derived from message sizes;
* **peak client memory**: growth of the resident set's high-water mark over the run (Linux:
  ``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs`` before each run,
  after a full GC and ``malloc_trim``). ``None`` where the platform cannot reset it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PROC = Path("/proc/self")


@dataclass
class Sample:
    """The repeats of one (workload, system)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of the repeats."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class SocketBytes:
    """Counts the bytes this process sends and receives through network sockets.

    The counting wrappers are installed on the ``socket.socket`` class for the duration of a
    ``with`` block, so they see every socket whatever library made it (redis-py, kombu, asyncio
    transports, tornado streams in Dask's comms) and whichever thread uses it. Unix-domain
    sockets are left out: they are asyncio's self-pipe wake-ups between threads of this
    process, not data passing through it.
    """

    SENDERS = ("send", "sendall", "sendto", "sendmsg")
    RECEIVERS = ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self.sent + self.received

    def _wrap_send(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def send(sock: socket.socket, data: Any, *args: Any) -> Any:
            result = original(sock, data, *args)
            if sock.family == socket.AF_UNIX:
                return result
            # sendall returns None once all of ``data`` went out; the others return the count
            n = memoryview(data).nbytes if name == "sendall" else result
            with self._lock:
                self.sent += n
            return result

        return send

    def _wrap_recv(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def recv(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
            result = original(sock, *args, **kwargs)
            if sock.family == socket.AF_UNIX:
                return result
            if name == "recv":
                n = len(result)
            elif name == "recv_into":
                n = result
            elif name == "recvfrom_into":
                n = result[0]
            else:  # recvfrom, recvmsg: (data, ...)
                n = len(result[0])
            with self._lock:
                self.received += n
            return result

        return recv

    @contextmanager
    def counting(self) -> Iterator[SocketBytes]:
        cls = socket.socket
        saved: dict[str, Any] = {}
        for name in self.SENDERS + self.RECEIVERS:
            original = getattr(cls, name)
            saved[name] = cls.__dict__.get(name)
            wrap = self._wrap_send if name in self.SENDERS else self._wrap_recv
            setattr(cls, name, wrap(name, original))
        try:
            yield self
        finally:
            for name, previous in saved.items():
                if previous is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, previous)


class PeakRss:
    """Peak resident-set growth over a block of code (Linux ``VmHWM``), in bytes."""

    def __init__(self) -> None:
        self.available = self._reset()
        libc_name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(libc_name) if libc_name else None
        self._trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)

    @staticmethod
    def _reset() -> bool:
        try:
            (_PROC / "clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status() -> dict[str, int]:
        text = (_PROC / "status").read_text()
        return {k: int(v) * 1024 for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}

    def before(self) -> int:
        """Free what can be freed, reset the high-water mark, return the current RSS."""
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self._reset()
        return self._status()["VmRSS"]

    def after(self, baseline: int) -> int:
        return max(0, self._status()["VmHWM"] - baseline)


_PEAK = PeakRss()


def measure(fn: Callable[[], Any], repeats: int, *, warmup: bool = True) -> Sample:
    """Run ``fn`` (once to warm up, unless ``warmup=False``), then ``repeats`` measured times."""
    if warmup:
        fn()
    sample = Sample()
    for _ in range(repeats):
        baseline = _PEAK.before() if _PEAK.available else 0
        counter = SocketBytes()
        with counter.counting():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sample.wall.append(wall)
        sample.cpu.append(cpu)
        sample.nbytes.append(counter.total)
        if _PEAK.available:
            sample.peak_rss.append(_PEAK.after(baseline))
    return sample


def expect(got: Any, want: Any, what: str) -> None:
    """Every run checks its result, so a broken workload can never report a time."""
    if got != want:
        raise RuntimeError(f"{what}: expected {want!r}, got {got!r}")
