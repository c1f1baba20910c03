"""Tests of the built-in context services: channel, memory, kv and artifacts."""

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

from aethergraph.errors import AetherGraphError, ArtifactNotFoundError, ConfigurationError
from aethergraph.services.builtins.artifacts import FilesystemArtifactStore, make_uri, parse_uri
from aethergraph.services.builtins.channel import (
    Channel,
    ChannelMessage,
    ConsoleChannelBackend,
    NullChannelBackend,
    RecordingChannelBackend,
)
from aethergraph.services.builtins.kv import InMemoryKV
from aethergraph.services.builtins.memory import InMemoryMemoryBackend, Memory, MemoryEvent

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


def test_recording_channel_keeps_messages_with_ids() -> None:
    backend = RecordingChannelBackend()
    chan = Channel(backend, **IDS)
    run(chan.send_text("a"))
    run(chan.send("custom", {"k": 1}))
    kinds = [(m.kind, m.payload, m.run_id, m.node_id) for m in backend.messages]
    assert kinds == [("text", "a", "r1", "n"), ("custom", {"k": 1}, "r1", "n")]
    first = backend.messages[0]
    assert ChannelMessage.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    backend.clear()
    assert backend.messages == []


def test_channel_rejects_bad_input() -> None:
    chan = Channel(RecordingChannelBackend(), **IDS)
    with pytest.raises(TypeError, match="send_text\\(\\) takes a str, got int"):
        run(chan.send_text(5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        run(chan.send_progress(-1, 10))
    with pytest.raises(TypeError, match="must be a number"):
        run(chan.send_progress("3"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON-compatible"):
        run(chan.send_json({"x": object()}))
    with pytest.raises(TypeError, match="non-empty str uri"):
        run(chan.send_file(""))
    with pytest.raises(AetherGraphError):
        run(chan.send("", 1))


def test_memory_is_run_scoped_and_ordered() -> None:
    backend = InMemoryMemoryBackend()
    a1 = Memory(backend, run_id="A", graph_id="g", node_id="n1")
    a2 = Memory(backend, run_id="A", graph_id="g", node_id="n2")
    b = Memory(backend, run_id="B", graph_id="g", node_id="n1")

    async def body() -> None:
        await a1.record("obs", {"i": 1})
        await a2.record("plan", [1, 2])
        await b.record("obs", "other run")
        await a1.record("obs", {"i": 2})

    run(body())
    assert [(e.seq, e.node_id, e.kind) for e in a2.snapshot()] == [
        (1, "n1", "obs"),
        (2, "n2", "plan"),
        (3, "n1", "obs"),
    ]
    assert [(e.seq, e.data) for e in b.snapshot()] == [(1, "other run")]
    assert [e.data for e in run(a1.recent(2))] == [[1, 2], {"i": 2}]
    assert [e.data for e in run(a1.recent(5, kind="obs"))] == [{"i": 1}, {"i": 2}]
    event = a1.snapshot()[0]
    assert MemoryEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    run(backend.clear("A"))
    assert a1.snapshot() == []
    assert len(b.snapshot()) == 1


def test_memory_record_copies_data() -> None:
    mem = Memory(InMemoryMemoryBackend(), **IDS)
    data = {"items": [1]}
    run(mem.record("obs", data))
    data["items"].append(2)
    assert mem.snapshot()[0].data == {"items": [1]}


def test_memory_bounds_events_and_runs() -> None:
    backend = InMemoryMemoryBackend(max_events_per_run=3, max_runs=2)

    async def body() -> None:
        for i in range(5):
            await backend.append(run_id="A", graph_id="g", node_id="n", kind="k", data=i)
        await backend.append(run_id="B", graph_id="g", node_id="n", kind="k", data=0)
        await backend.append(run_id="C", graph_id="g", node_id="n", kind="k", data=0)

    run(body())
    assert backend.snapshot("A") == []  # oldest-created run dropped
    assert backend.run_ids() == ["B", "C"]
    backend2 = InMemoryMemoryBackend(max_events_per_run=3)
    for i in range(5):
        run(backend2.append(run_id="A", graph_id="g", node_id="n", kind="k", data=i))
    assert [(e.seq, e.data) for e in backend2.snapshot("A")] == [(3, 2), (4, 3), (5, 4)]


def test_memory_concurrent_appends_from_threads_get_unique_seqs() -> None:
    backend = InMemoryMemoryBackend()
    threads_n, per_thread = 8, 200

    def worker(t: int) -> None:
        mem = Memory(backend, run_id="R", graph_id="g", node_id=f"n{t}")

        async def body() -> None:
            for i in range(per_thread):
                await mem.record("tick", i)

        asyncio.run(body())

    in_threads(worker, threads_n)
    seqs = [e.seq for e in backend.snapshot("R")]
    assert seqs == list(range(1, threads_n * per_thread + 1))


def test_memory_rejects_bad_input() -> None:
    mem = Memory(InMemoryMemoryBackend(), **IDS)
    with pytest.raises(TypeError, match="non-empty str kind"):
        run(mem.record(""))
    with pytest.raises(ValueError, match="n >= 1"):
        run(mem.recent(0))
    with pytest.raises(TypeError, match="JSON-compatible"):
        run(mem.record("obs", {1, 2}))
    with pytest.raises(ConfigurationError, match="max_runs"):
        InMemoryMemoryBackend(max_runs=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_kv_round_trip_delete_exists() -> None:
    kv = InMemoryKV()

    async def body() -> None:
        assert await kv.get("missing", "dflt") == "dflt"
        await kv.set("k", {"a": [1, 2], "b": None})
        assert await kv.get("k") == {"a": [1, 2], "b": None}
        assert await kv.exists("k")
        assert await kv.delete("k") is True
        assert await kv.delete("k") is False
        assert not await kv.exists("k")

    run(body())


def test_kv_stores_copies() -> None:
    kv = InMemoryKV()
    value = {"items": [1]}
    run(kv.set("k", value))
    value["items"].append(2)
    got = run(kv.get("k"))
    got["items"].append(3)
    assert run(kv.get("k")) == {"items": [1]}


def test_kv_ttl_expiry_with_fake_clock() -> None:
    clock = FakeClock()
    kv = InMemoryKV(clock=clock)
    run(kv.set("t", 1, ttl=5))
    run(kv.set("forever", 2))
    clock.now += 4.9
    assert run(kv.get("t")) == 1
    clock.now += 0.2
    assert run(kv.get("t")) is None
    assert not run(kv.exists("t"))
    assert run(kv.delete("t")) is False  # an expired key is not "something deleted"
    assert run(kv.get("forever")) == 2
    assert len(kv) == 1


def test_kv_rejects_bad_input() -> None:
    kv = InMemoryKV()
    with pytest.raises(ValueError, match="non-empty"):
        run(kv.set("", 1))
    with pytest.raises(TypeError, match="keys must be str"):
        run(kv.get(3))  # type: ignore[arg-type]
    for bad_ttl in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            run(kv.set("k", 1, ttl=bad_ttl))
    with pytest.raises(TypeError, match=r"'blob'.*bytes.*artifacts\(\)"):
        run(kv.set("blob", b"\x00"))
    assert not run(kv.exists("blob"))


def test_uri_helpers() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_uri(make_uri(digest)) == digest
    for bad in ("artifact://sha256/abc", "file:///tmp/x", "artifact://sha256/" + "G" * 64):
        with pytest.raises(ConfigurationError, match="expected 'artifact://sha256/<64"):
            parse_uri(bad)
    with pytest.raises(TypeError):
        parse_uri(123)  # type: ignore[arg-type]


def test_artifact_round_trips_and_content_addressing(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "store")

    async def body() -> None:
        uri = await store.save_bytes(b"hello")
        assert uri == make_uri(hashlib.sha256(b"hello").hexdigest())
        assert await store.save_bytes(b"hello") == uri
        assert await store.load_bytes(uri) == b"hello"
        assert await store.exists(uri)
        digest = parse_uri(uri)
        assert store.local_path(uri) == tmp_path / "store" / digest[:2] / digest[2:]
        assert await store.load_text(await store.save_text("héllo")) == "héllo"
        j1 = await store.save_json({"b": 1, "a": [1, 2]})
        assert j1 == await store.save_json({"a": [1, 2], "b": 1})
        assert await store.load_bytes(j1) == b'{"a":[1,2],"b":1}'
        assert await store.load_json(j1) == {"a": [1, 2], "b": 1}

    run(body())


def test_artifact_large_file_round_trip(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "store")
    data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: several chunks, off-loop paths
    src = tmp_path / "big.bin"
    src.write_bytes(data)

    async def body() -> None:
        uri = await store.save_file(src)
        assert uri == make_uri(hashlib.sha256(data).hexdigest())
        assert await store.save_bytes(data) == uri
        out = await store.load_file(uri, tmp_path / "out" / "nested" / "copy.bin")
        assert out == tmp_path / "out" / "nested" / "copy.bin"
        assert out.read_bytes() == data
        assert await store.load_bytes(uri) == data

    run(body())


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


def test_artifact_concurrent_saves_of_same_content(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    data = b"z" * 50_000
    uris: list[str] = []

    in_threads(lambda _: uris.append(asyncio.run(store.save_bytes(data))), 8)
    assert len(uris) == 8
    assert len(set(uris)) == 1
    assert run(store.load_bytes(uris[0])) == data
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [parse_uri(uris[0])[2:]]


def test_artifact_missing_and_bad_input(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    missing = make_uri("0" * 64)
    assert run(store.exists(missing)) is False
    with pytest.raises(ArtifactNotFoundError, match=missing):
        run(store.load_bytes(missing))
    with pytest.raises(FileNotFoundError, match=missing):
        run(store.load_file(missing, tmp_path / "x"))
    with pytest.raises(ConfigurationError, match="malformed artifact URI"):
        run(store.load_bytes("artifact://md5/abc"))
    with pytest.raises(TypeError, match="save_text"):
        run(store.save_bytes("text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="save_bytes"):
        run(store.save_text(b"raw"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON-compatible"):
        run(store.save_json({"x": object()}))
    with pytest.raises(FileNotFoundError, match="no file"):
        run(store.save_file(tmp_path / "nope.txt"))
