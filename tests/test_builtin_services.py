"""Tests of the in-process built-in services that no other backend shares.

What every backend of kv / memory / channel / artifacts must do is the backend contract in
``tests/backends/`` (run against these implementations and the Redis ones); here are only the
console and null channels, the in-process memory's run bound, the in-process kv's clock and
purge, the URI helpers and the filesystem store's layout and atomic writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aethergraph.errors import ConfigurationError, ServiceUsageError
from aethergraph.services.builtins.artifacts import FilesystemArtifactStore, make_uri, parse_uri
from aethergraph.services.builtins.channel import (
    Channel,
    ChannelMessage,
    ConsoleChannelBackend,
    NullChannelBackend,
    RecordingChannelBackend,
)
from aethergraph.services.builtins.kv import InMemoryKV
from aethergraph.services.builtins.memory import InMemoryMemoryBackend

T = TypeVar("T")
IDS = {"run_id": "r1", "graph_id": "g", "node_id": "n"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def in_threads(target: Callable[[int], None], n: int) -> None:
    """Run ``target(i)`` on ``n`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)


# -- channel -----------------------------------------------------------------------------------


def test_console_channel_formats_each_kind(capsys: pytest.CaptureFixture[str]) -> None:
    chan = Channel(ConsoleChannelBackend(), **IDS)

    async def body() -> None:
        await chan.send_text("hello")
        await chan.send_json({"b": 1, "a": [1, 2]})
        await chan.send_progress(3, 10, "loading")
        await chan.send_progress(2)
        await chan.send_file("artifact://sha256/" + "a" * 64, "report.csv")

    run(body())
    assert capsys.readouterr().out.splitlines() == [
        "[g/n] hello",
        '[g/n] {"a":[1,2],"b":1}',
        "[g/n] progress 3/10 (30%) loading",
        "[g/n] progress 2",
        f"[g/n] file artifact://sha256/{'a' * 64} report.csv",
    ]


def test_console_channel_explicit_stream_and_null_backend() -> None:
    stream = io.StringIO()
    run(Channel(ConsoleChannelBackend(stream), **IDS).send_text("x"))
    assert stream.getvalue() == "[g/n] x\n"
    msg = run(Channel(NullChannelBackend(), **IDS).send_text("dropped"))
    assert msg.payload == "dropped"


def test_null_channel_still_checks_arguments() -> None:
    with pytest.raises(ServiceUsageError, match="JSON-compatible"):
        run(Channel(NullChannelBackend(), **IDS).send_json({"x": object()}))


def test_recording_channel_messages_is_a_copy_and_clear_forgets() -> None:
    backend = RecordingChannelBackend()
    run(Channel(backend, **IDS).send("custom", {"k": 1}))
    seen = backend.messages
    seen.clear()  # a copy: the backend's record is untouched
    (first,) = backend.messages
    assert ChannelMessage.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    backend.clear()
    assert backend.messages == []


# -- memory ------------------------------------------------------------------------------------


def test_in_process_memory_keeps_at_most_max_runs() -> None:
    backend = InMemoryMemoryBackend(max_events_per_run=3, max_runs=2)

    async def body() -> None:
        for run_id in ("A", "B", "C"):
            await backend.append(run_id=run_id, graph_id="g", node_id="n", kind="k", data=0)

    run(body())
    assert backend.snapshot("A") == []  # the oldest-created run was dropped
    assert backend.run_ids() == ["B", "C"]
    for bad in (0, -1, True):
        with pytest.raises(ConfigurationError, match="max_runs"):
            InMemoryMemoryBackend(max_runs=bad)


# -- kv ----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_in_process_kv_expiry_is_exact_and_len_counts_live_keys() -> None:
    clock = FakeClock()
    kv = InMemoryKV(clock=clock)
    run(kv.set("t", 1, ttl=5))
    run(kv.set("forever", 2))
    run(kv.set("reset", 3, ttl=5))
    run(kv.set("reset", 4))  # a plain set drops the earlier ttl
    clock.now += 4.9
    assert run(kv.get("t")) == 1
    assert len(kv) == 3
    clock.now += 0.2
    assert run(kv.get("t")) is None
    assert run(kv.get("reset")) == 4
    assert len(kv) == 2  # also purges the expired ones
    # Review D5: with __len__ an empty store is falsy, so never test a store by truth value.
    run(kv.delete("forever"))
    run(kv.delete("reset"))
    assert len(kv) == 0


def test_in_process_kv_purges_expired_keys_nobody_reads() -> None:
    clock = FakeClock()
    kv = InMemoryKV(clock=clock)
    for i in range(10):
        run(kv.set(f"once{i}", i, ttl=1))
    clock.now += 2

    async def writes() -> None:
        for i in range(InMemoryKV._PURGE_EVERY):
            await kv.set("busy", i)

    run(writes())
    assert set(kv._data) == {"busy"}  # dropped by the periodic purge, not by a read


# -- artifacts ---------------------------------------------------------------------------------


def test_uri_helpers() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_uri(make_uri(digest)) == digest
    for bad in ("artifact://sha256/abc", "file:///tmp/x", "artifact://sha256/" + "G" * 64):
        with pytest.raises(ServiceUsageError, match="expected 'artifact://sha256/<64"):
            parse_uri(bad)
    with pytest.raises(ServiceUsageError, match="URIs are str"):
        parse_uri(123)  # type: ignore[arg-type]
    for bad_digest in ("abc", "A" * 64, 5):
        with pytest.raises(ServiceUsageError, match="sha256 hex digest"):
            make_uri(bad_digest)  # type: ignore[arg-type]


def test_filesystem_store_layout(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "store")
    uri = run(store.save_bytes(b"hello"))
    digest = parse_uri(uri)
    assert store.local_path(uri) == tmp_path / "store" / digest[:2] / digest[2:]
    assert store.local_path(uri).read_bytes() == b"hello"
    with pytest.raises(ConfigurationError, match="needs a path"):
        FilesystemArtifactStore(42)  # type: ignore[arg-type]


def test_artifact_writes_are_idempotent_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    uri = run(store.save_bytes(b"same"))
    before = store.local_path(uri).stat()
    src = tmp_path / "same.txt"
    src.write_bytes(b"same")
    assert run(store.save_file(src)) == uri
    assert run(store.save_bytes(b"same")) == uri
    after = store.local_path(uri).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_artifact_concurrent_saves_store_one_object(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    data = b"z" * 50_000
    uris: list[str] = []

    in_threads(lambda _: uris.append(asyncio.run(store.save_bytes(data))), 8)
    assert len(set(uris)) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [parse_uri(uris[0])[2:]]
