"""Helpers of the deployment-file tests: paths, the validators' binaries, throwaway TLS
material and private ``redis-server`` processes.

Every process started here is started by these helpers and stopped by its pid; every file is
written under a temporary directory removed at the end. Nothing here talks to a Redis the tests
did not start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from aethergraph.redis_server import find_redis_server, free_port

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the venv's bin: shellcheck, kubernetes-validate, aethergraph

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from polling import wait_until  # noqa: E402

# the placeholder passwords broker/users.acl ships with (docs: replace them in production)
PASSWORDS = {
    "ag-client": "change-me-client",
    "ag-worker": "change-me-worker",
    "ag-ops": "change-me-ops",
    "ag-sentinel": "change-me-sentinel",
    "ag-replica": "change-me-replica",
}


def venv_tool(name: str) -> Path:
    """A console script installed next to this interpreter (fails the test if it is missing:
    these tools are test dependencies in pyproject.toml)."""
    path = BIN / name
    assert path.is_file(), f"{name} is not installed in {BIN}: pip install -e '.[test]'"
    return path


def run_tool(
    *argv: str | Path, timeout: float = 60.0, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a validator; its completed process (exit code, stdout, stderr as text)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def make_tls(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, signed by it (openssl;
    EC keys: a fraction of a second)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no TLS material for the broker test")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "redis.key", folder / "redis.csr", folder / "redis.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "1",
         "-subj", "/CN=aethergraph-test-ca"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "1", "-extfile", ext],
    ]  # fmt: skip
    for step in steps:
        done = run_tool(*step)
        assert done.returncode == 0, done.stderr
    return {"ca": ca_crt, "cert": crt, "key": key}


def override(text: str, **directives: str) -> str:
    """A Redis config ``text`` with each directive's lines replaced by ``name value`` (appended
    when the file has none). ``dir`` must be replaced, not appended: Redis changes into it while
    it reads the file, so a production path that does not exist here would stop the server."""
    for name, value in directives.items():
        name = name.replace("_", "-")
        line = f"{name} {value}"
        text, n = re.subn(rf"^{re.escape(name)} .*$", lambda _m, line=line: line, text, flags=re.M)
        if not n:
            text += f"\n{line}\n"
    return text


class RedisProcess:
    """A ``redis-server`` started by a test from a config file, stopped by its pid."""

    def __init__(self, config: Path, *extra: str, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [find_redis_server(), str(config), *extra],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, probe: redis.Redis, what: str) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{what} exited at start:\n{self.log.read_text()}")
            try:
                return bool(probe.ping())
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        wait_until(up, what, timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this pid only
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a process a test starts: this one's, with the venv's bin first on
    PATH, no broker of the developer's, and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERGRAPH_")}
    env["AETHERGRAPH_ARTIFACTS_DIR"] = os.environ.get("AETHERGRAPH_ARTIFACTS_DIR", "")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


__all__ = [
    "BIN",
    "HERE",
    "PASSWORDS",
    "REPO",
    "RedisProcess",
    "child_env",
    "free_port",
    "make_tls",
    "override",
    "run_tool",
    "venv_tool",
    "wait_until",
]
