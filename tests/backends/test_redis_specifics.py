"""Tests of the Redis-backed built-in services that only Redis has, against the test Redis (one
namespace per test).

What every kv / memory / channel / artifacts backend must do is the backend contract in
``tests/backends/``, which these backends pass too; here are the Redis specifics: what is stored
under which key with which ttl, per-loop clients, Pub/Sub subscriptions and reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from aethergraph.errors import (
    ArtifactNotFoundError,
    ConfigurationError,
    RuntimeUsageError,
    ServiceUsageError,
)
from aethergraph.keys import Keys
from aethergraph.services.builtins.channel import Channel, ChannelMessage
from aethergraph.services.builtins.memory import MemoryEvent
from aethergraph.services.builtins.redis_backends import (
    ArtifactTooLargeError,
    RedisArtifactStore,
    RedisKV,
    RedisMemoryBackend,
)
from aethergraph.services.builtins.redis_channel import RedisChannelBackend, RunEventSubscriber

from .helpers import WAIT, in_threads, run, until


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there any more: refused at once


# -- construction --------------------------------------------------------------------------------


def test_constructor_validates_url_and_keys_and_hides_password(redis_url: str, keys: Keys) -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisKV("http://localhost:6379", keys)
    with pytest.raises(ConfigurationError, match="Keys"):
        RedisKV(redis_url, "ns")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_events_per_run"):
        RedisMemoryBackend(redis_url, keys, max_events_per_run=0)
    with pytest.raises(ConfigurationError, match="max_size"):
        RedisArtifactStore(redis_url, keys, max_size=-1)
    backend = RedisKV("redis://user:s3cret@localhost:6379/0", keys)
    assert "s3cret" not in repr(backend)
    assert "***" in backend.url


# -- kv ------------------------------------------------------------------------------------------


def test_kv_stores_json_under_its_namespaced_key(
    redis_url: str, keys: Keys, raw: redis.Redis
) -> None:
    kv = RedisKV(redis_url, keys)

    async def body() -> None:
        await kv.set("s", "text")
        await kv.set("d", {"a": [1, None]})
        await kv.aclose()

    run(body())
    assert json.loads(raw.get(keys.kv("s")) or b"") == "text"
    assert json.loads(raw.get(keys.kv("d")) or b"") == {"a": [1, None]}
    assert raw.get("s") is None  # never outside the namespace


def test_kv_ttl_is_a_redis_px(redis_url: str, keys: Keys, raw: redis.Redis) -> None:
    kv = RedisKV(redis_url, keys)

    async def body() -> None:
        await kv.set("t", "v", ttl=60)
        assert 0 < raw.pttl(keys.kv("t")) <= 60_000
        await kv.set("t", "v2")  # a plain set drops the ttl, like the in-process store
        assert raw.pttl(keys.kv("t")) == -1
        await kv.set("t", "v3", ttl=0.05)
        assert 0 < raw.pttl(keys.kv("t")) <= 50
        await kv.set("t", "v4", ttl=0.0001)  # below a millisecond: 1 ms, never PX 0
        assert raw.pttl(keys.kv("t")) in (-2, 0, 1)
        await kv.aclose()

    run(body())


# -- memory --------------------------------------------------------------------------------------


async def append(backend: RedisMemoryBackend, run_id: str, kind: str, data: Any) -> MemoryEvent:
    return await backend.append(run_id=run_id, graph_id="g", node_id="n", kind=kind, data=data)


def test_memory_seq_is_atomic_across_threads_loops_and_instances(
    redis_url: str, keys: Keys
) -> None:
    # Two backend instances stand in for two worker processes; each thread has its own loop.
    backends = [RedisMemoryBackend(redis_url, keys), RedisMemoryBackend(redis_url, keys)]
    per_thread, threads = 25, 6
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        async def body() -> list[int]:
            backend = backends[i % 2]
            events = await asyncio.gather(
                *(append(backend, "run", "step", {"t": i, "j": j}) for j in range(per_thread))
            )
            return [e.seq for e in events]

        got = run(body())
        with lock:
            seqs.extend(got)

    in_threads(worker, threads)
    total = per_thread * threads
    assert sorted(seqs) == list(range(1, total + 1))
    snapshot = backends[0].snapshot("run")
    assert [e.seq for e in snapshot] == list(range(1, total + 1))  # list order == seq order
    for backend in backends:
        backend.snapshot("run")
        run(backend.aclose())


def test_memory_is_trimmed_and_expires(redis_url: str, keys: Keys, raw: redis.Redis) -> None:
    backend = RedisMemoryBackend(redis_url, keys, max_events_per_run=5, ttl=3600)

    async def body() -> None:
        for i in range(12):
            await append(backend, "r", "k", i)

    run(body())
    assert raw.llen(keys.memory("r")) == 5
    assert int(raw.get(keys.memory_seq("r")) or 0) == 12
    for key in (keys.memory("r"), keys.memory_seq("r")):
        assert 0 < raw.pttl(key) <= 3_600_000
    run(backend.aclose())


def test_memory_recent_with_kind_scans_back(redis_url: str, keys: Keys) -> None:
    backend = RedisMemoryBackend(redis_url, keys)

    async def body() -> None:
        # Three rare events, then far more common ones than one read chunk (256) holds.
        for i in range(3):
            await append(backend, "r", "rare", {"i": i})
        for i in range(700):
            await append(backend, "r", "common", i)
        await append(backend, "r", "rare", {"i": 3})
        picked = await backend.recent("r", 3, kind="rare")
        assert [e.data for e in picked] == [{"i": 1}, {"i": 2}, {"i": 3}]
        assert [e.seq for e in picked] == [2, 3, 704]
        assert [e.seq for e in await backend.recent("r", 10, kind="rare")] == [1, 2, 3, 704]
        assert await backend.recent("r", 5, kind="none-such") == []
        assert [e.seq for e in await backend.recent("r", 3)] == [702, 703, 704]
        await backend.aclose()

    run(body())


# -- channel -------------------------------------------------------------------------------------


class Collector:
    """Callback that records messages and signals once ``expected`` have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.messages: list[ChannelMessage] = []
        self.done = asyncio.Event()

    def __call__(self, message: ChannelMessage) -> None:
        self.messages.append(message)
        if len(self.messages) >= self.expected:
            self.done.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.done.wait(), WAIT)


def test_subscriber_async_callback_errors_are_logged_not_fatal(
    redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisChannelBackend(redis_url, keys)

    async def body() -> list[Any]:
        seen: list[Any] = []
        done = asyncio.Event()

        async def on_message(message: ChannelMessage) -> None:
            seen.append(message.payload)
            if message.payload == "boom":
                raise RuntimeError("callback bug")
            if message.payload == "last":
                done.set()

        chan = Channel(backend, run_id="r", graph_id="g", node_id="n")
        async with RunEventSubscriber(redis_url, keys, on_message) as sub:
            await sub.add_run("r")
            for text in ("boom", "after", "last"):
                await chan.send_text(text)
            await asyncio.wait_for(done.wait(), WAIT)
        await backend.aclose()
        return seen

    with caplog.at_level(logging.ERROR):
        assert run(body()) == ["boom", "after", "last"]
    assert "callback bug" in caplog.text


def test_remove_run_stops_delivery(redis_url: str, keys: Keys, raw: redis.Redis) -> None:
    backend = RedisChannelBackend(redis_url, keys)

    def message(run_id: str, payload: str) -> ChannelMessage:
        return ChannelMessage(run_id, "g", "n", "text", payload, time.time())

    async def body() -> list[ChannelMessage]:
        collector = Collector(expected=2)
        async with backend.subscriber(collector) as sub:
            await sub.add_run("a")
            await sub.add_run("b")
            await sub.add_run("b")  # already followed: no-op
            await backend.publish(message("a", "a1"))
            await backend.publish(message("b", "b1"))
            await collector.wait()
            await sub.remove_run("a")
            await sub.remove_run("never-added")
            assert sub.runs == ["b"]
            assert raw.pubsub_numsub(keys.run_channel("a")) == [(keys.run_channel("a").encode(), 0)]
            collector.done.clear()
            collector.expected = 3
            await backend.publish(message("a", "a2"))  # published before b2: would arrive first
            await backend.publish(message("b", "b2"))
            await collector.wait()
        await backend.aclose()
        return collector.messages

    assert [m.payload for m in run(body())] == ["a1", "b1", "b2"]


def test_publish_never_fails_the_tool(redis_url: str, keys: Keys) -> None:
    msg = ChannelMessage("nobody", "g", "n", "text", "x", 1.0)

    async def body() -> None:
        listening_to_nobody = RedisChannelBackend(redis_url, keys)
        await listening_to_nobody.publish(msg)
        await listening_to_nobody.aclose()
        unreachable = RedisChannelBackend(closed_port_url(), keys, timeout=2)
        await unreachable.publish(msg)  # logged and dropped
        await unreachable.publish(msg)
        await unreachable.aclose()

    run(body())


def test_publish_and_subscriber_check_their_arguments(redis_url: str, keys: Keys) -> None:
    backend = RedisChannelBackend(redis_url, keys)
    not_json = ChannelMessage("r", "g", "n", "json", {"x": object()}, 1.0)
    with pytest.raises(ServiceUsageError, match="JSON-compatible"):
        run(backend.publish(not_json))  # a message that bypassed Channel's own check
    with pytest.raises(ConfigurationError, match="callable"):
        RunEventSubscriber(redis_url, keys, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ServiceUsageError, match="run ids"):
        RunEventSubscriber(redis_url, keys, lambda m: None, runs=[""])
    with pytest.raises(ConfigurationError, match="timeout"):
        RedisChannelBackend(redis_url, keys, timeout=0)


def test_subscriber_is_bound_to_its_loop(redis_url: str, keys: Keys) -> None:
    sub = RunEventSubscriber(redis_url, keys, lambda m: None, runs=["r"])
    closed = RunEventSubscriber(redis_url, keys, lambda m: None)

    async def body() -> None:
        await sub.start()
        with pytest.raises(RuntimeUsageError, match="event loop"):
            await asyncio.to_thread(run, sub.add_run("other"))  # another thread, another loop
        await sub.close()
        await closed.start()
        await closed.close()
        await closed.close()  # idempotent
        with pytest.raises(RuntimeUsageError, match="closed"):
            await closed.add_run("r")

    run(body())


# -- artifacts -----------------------------------------------------------------------------------


def test_artifacts_are_raw_bytes_with_a_refreshed_ttl(
    redis_url: str, keys: Keys, raw: redis.Redis, tmp_path: Path
) -> None:
    store = RedisArtifactStore(redis_url, keys, ttl=3600)
    data = b"\x00\x01binary\xff" * 100
    digest = hashlib.sha256(data).hexdigest()

    async def body() -> None:
        uri = await store.save_bytes(data)
        assert uri == f"artifact://sha256/{digest}"
        assert await store.exists(uri)
        assert await store.load_bytes(uri) == data
        assert 0 < raw.pttl(keys.artifact(digest)) <= 3_600_000
        raw.pexpire(keys.artifact(digest), 5_000)
        assert await store.save_bytes(data) == uri  # same content, same URI ...
        assert raw.pttl(keys.artifact(digest)) > 5_000  # ... and the ttl is refreshed
        src = tmp_path / "in.bin"
        src.write_bytes(data)
        raw.pexpire(keys.artifact(digest), 5_000)
        assert await store.save_file(src) == uri  # a file save refreshes it too
        assert raw.pttl(keys.artifact(digest)) > 5_000
        missing = "artifact://sha256/" + "0" * 64
        with pytest.raises(ArtifactNotFoundError, match="expired after its ttl"):
            await store.load_bytes(missing)  # the message says why it may be gone
        await store.aclose()

    run(body())
    assert raw.get(keys.artifact(digest)) == data


def test_artifacts_max_size(redis_url: str, keys: Keys, raw: redis.Redis, tmp_path: Path) -> None:
    store = RedisArtifactStore(redis_url, keys, max_size=10)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 11)

    async def body() -> None:
        assert await store.load_bytes(await store.save_bytes(b"x" * 10)) == b"x" * 10
        with pytest.raises(ArtifactTooLargeError, match="shared filesystem"):
            await store.save_bytes(b"x" * 11)
        with pytest.raises(ValueError, match="shared filesystem"):
            await store.save_file(big)
        await store.aclose()

    run(body())
    assert not raw.exists(keys.artifact(hashlib.sha256(b"x" * 11).hexdigest()))


# -- event loops ---------------------------------------------------------------------------------


def test_backend_survives_consecutive_event_loops(redis_url: str, keys: Keys) -> None:
    kv = RedisKV(redis_url, keys)
    memory = RedisMemoryBackend(redis_url, keys)
    run(kv.set("x", 1))
    assert run(kv.get("x")) == 1  # a new loop: the first loop's client must not be reused
    assert run(append(memory, "r", "k", None)).seq == 1
    assert run(append(memory, "r", "k", None)).seq == 2
    run(kv.aclose())
    assert run(kv.get("x")) == 1  # usable again after aclose: a fresh client is opened
    run(kv.aclose())
    run(memory.aclose())


def test_backend_shared_by_threads_each_with_a_loop(redis_url: str, keys: Keys) -> None:
    kv = RedisKV(redis_url, keys)
    store = RedisArtifactStore(redis_url, keys)
    barrier = threading.Barrier(2, timeout=WAIT)

    def worker(i: int) -> None:
        async def body() -> None:
            await kv.set(f"k{i}", i)
            uri = await store.save_text("shared")
            barrier.wait()  # both loops now hold live clients at the same time
            assert await kv.get(f"k{1 - i}") == 1 - i
            assert await store.load_text(uri) == "shared"

        run(body())

    in_threads(worker, 2)
    run(kv.aclose())
    run(store.aclose())


def test_aclose_reaches_clients_of_other_running_loops(redis_url: str, keys: Keys) -> None:
    kv = RedisKV(redis_url, keys)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(kv.set("k", "v"), loop).result(WAIT)
        run(kv.aclose())  # closes the other loop's client on that loop
        assert asyncio.run_coroutine_threadsafe(kv.get("k"), loop).result(WAIT) == "v"
        asyncio.run_coroutine_threadsafe(kv.aclose(), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


def test_subscriber_recovers_from_a_dropped_connection(
    redis_url: str, keys: Keys, raw: redis.Redis
) -> None:
    name = f"{keys.ns}-sub"  # unique per test, so we kill only our own connection
    url = f"{redis_url}?client_name={name}"
    channel = keys.run_channel("r")

    async def body() -> list[Any]:
        collector = Collector(expected=1)
        async with RunEventSubscriber(url, keys, collector, runs=["r"]):
            (client,) = [c for c in raw.client_list() if c["name"] == name]
            assert raw.client_kill_filter(_id=client["id"]) == 1

            # The reader reconnects and resubscribes by itself; wait until Redis counts a
            # subscriber again, then the message must arrive.
            async def resubscribed() -> bool:
                return bool(raw.pubsub_numsub(channel)[0][1] == 1)

            await until(resubscribed, "the subscriber to come back")
            payload = json.dumps(ChannelMessage("r", "g", "n", "text", "back", 1.0).to_dict())
            raw.publish(channel, payload)
            await collector.wait()
        return [m.payload for m in collector.messages]

    assert run(body()) == ["back"]


def test_subscriber_start_failure_raises_and_closes(keys: Keys) -> None:
    sub = RunEventSubscriber(closed_port_url(), keys, lambda m: None, runs=["r"])

    async def body() -> None:
        with pytest.raises(redis.ConnectionError):
            await sub.start()
        with pytest.raises(RuntimeUsageError, match="closed"):
            await sub.add_run("x")

    run(body())


def test_a_write_on_a_closed_transport_is_reported_as_a_connection_error() -> None:
    """redis-py#4287: asyncio's 'NoneType' errors on a closed transport become ConnectionError;
    other errors pass through as they are."""
    import redis as redis_lib

    from aethergraph.services.builtins.redis_backends import closed_transport_is_a_connection_error

    with (
        pytest.raises(redis_lib.ConnectionError, match="closed while writing"),
        closed_transport_is_a_connection_error(),
    ):
        None.writelines([])  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no_such"), closed_transport_is_a_connection_error():
        object().no_such  # type: ignore[attr-defined]  # noqa: B018
