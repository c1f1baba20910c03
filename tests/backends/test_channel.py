"""The ``ChannelBackend`` contract (with the ``Channel`` front end on it), passed by every
built-in backend that delivers messages: ``RecordingChannelBackend`` in process and
``RedisChannelBackend`` over Pub/Sub. Each backend inherits ``ChannelContract`` and supplies
``backend`` and ``watch`` (how a watcher of some runs sees what arrives). The console and null
backends only print or drop, so their tests stay in ``tests/test_builtin_services.py``; Redis
subscription details (remove_run, reconnects, loop binding) in ``tests/test_redis_backends.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aethergraph.errors import ServiceUsageError
from aethergraph.keys import Keys
from aethergraph.services.builtins.channel import (
    Channel,
    ChannelBackend,
    ChannelMessage,
    RecordingChannelBackend,
)
from aethergraph.services.builtins.redis_channel import RedisChannelBackend

from .helpers import WAIT, in_threads, run

FILE_URI = "artifact://sha256/" + "a" * 64


class Watch:
    """What a watcher of a Redis channel received, in arrival order (filled by a subscriber)."""

    def __init__(self) -> None:
        self.messages: list[ChannelMessage] = []
        self._arrived = asyncio.Condition()

    async def add(self, message: ChannelMessage) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    async def take(self, n: int) -> list[ChannelMessage]:
        """The first ``n`` messages, once they have arrived (bounded by WAIT)."""
        async with asyncio.timeout(WAIT), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= n)
        return self.messages[:n]


class ChannelContract:
    """What every delivering ``context.channel()`` backend must do."""

    @pytest.fixture
    def backend(self) -> ChannelBackend:
        raise NotImplementedError

    def watch(self, backend: ChannelBackend, runs: list[str]) -> Any:
        """An async context manager giving a :class:`Watch` of ``runs``' messages."""
        raise NotImplementedError

    def test_messages_arrive_in_order_intact_with_their_ids(self, backend: ChannelBackend) -> None:
        chan = Channel(backend, run_id="run-1", graph_id="graph-1", node_id="node-7")

        async def body() -> None:
            async with self.watch(backend, ["run-1"]) as watch:
                sent = [await chan.send_text("start")]
                sent += [await chan.send_progress(i, 28, f"step {i}") for i in range(28)]
                sent.append(await chan.send_progress(0, 0))  # nothing to do is fine
                sent.append(await chan.send_progress(2.5))  # total unknown
                sent.append(await chan.send_json({"done": True, "n": [1.5, None], "s": "é"}))
                sent.append(await chan.send_file(FILE_URI, "report.csv"))
                sent.append(await chan.send_file(FILE_URI))
                sent.append(await chan.send("custom-kind", ["any", {"json": 1}]))
                got = await watch.take(len(sent))
            assert got == sent
            assert {(m.run_id, m.graph_id, m.node_id) for m in got} == {
                ("run-1", "graph-1", "node-7")
            }
            assert got[-3].payload == {"uri": FILE_URI, "name": "report.csv"}
            assert got[-2].payload == {"uri": FILE_URI, "name": None}
            assert got[1].payload == {"current": 0, "total": 28, "message": "step 0"}

        run(body())

    def test_publishers_on_many_threads_each_keep_their_order(
        self, backend: ChannelBackend
    ) -> None:
        threads, per_thread = 4, 10

        def publisher(i: int) -> None:
            chan = Channel(backend, run_id="r", graph_id="g", node_id=f"n{i}")

            async def body() -> None:
                for j in range(per_thread):
                    await chan.send_json({"i": i, "j": j})

            run(body())  # a loop of its own, as a sync tool's thread or a worker has

        async def body() -> list[ChannelMessage]:
            async with self.watch(backend, ["r"]) as watch:
                await asyncio.to_thread(in_threads, publisher, threads)
                return await watch.take(threads * per_thread)

        got = run(body())
        for i in range(threads):
            mine = [m.payload["j"] for m in got if m.node_id == f"n{i}"]
            assert mine == list(range(per_thread))

    def test_bad_arguments_raise_service_usage_error_and_send_nothing(
        self, backend: ChannelBackend
    ) -> None:
        chan = Channel(backend, run_id="r", graph_id="g", node_id="n")
        bad: list[tuple[Any, str]] = [
            (lambda: chan.send("", 1), "non-empty str kind"),
            (lambda: chan.send(3, 1), "non-empty str kind"),
            (lambda: chan.send("json", {"x": object()}), "not JSON-compatible"),
            (lambda: chan.send_json({"x": float("nan")}), "not JSON-compatible"),
            (lambda: chan.send_json(b"bytes"), "not JSON-compatible"),
            (lambda: chan.send_text(5), r"send_text\(\) takes a str, got int"),
            (lambda: chan.send_progress(-1, 10), "current must be a finite number >= 0"),
            (lambda: chan.send_progress("3"), "current must be a number"),
            (lambda: chan.send_progress(True), "current must be a number"),
            (lambda: chan.send_progress(1, float("inf")), "total must be a finite number"),
            (lambda: chan.send_progress(1, 0), "total must be > 0"),
            (lambda: chan.send_progress(1, 10, message=3), "message must be a str"),
            (lambda: chan.send_file(""), "non-empty str uri"),
            (lambda: chan.send_file(3), "non-empty str uri"),
            (lambda: chan.send_file(FILE_URI, name=3), "name must be a str or None"),
        ]

        async def body() -> list[ChannelMessage]:
            async with self.watch(backend, ["r"]) as watch:
                for call, message in bad:
                    with pytest.raises(ServiceUsageError, match=message):
                        await call()
                marker = await chan.send_text("marker")
                got = await watch.take(1)
                assert got == [marker]  # not one rejected message was delivered before it
                return watch.messages

        assert [m.payload for m in run(body())] == ["marker"]


class RecordingWatch:
    """A watcher of a recording backend: what it recorded since the watch began, for ``runs``.

    The backend records synchronously, so a message is there once ``publish`` returned: no wait.
    """

    def __init__(self, backend: RecordingChannelBackend, runs: list[str]) -> None:
        self._backend = backend
        self._runs = runs
        self._start = len(backend.messages)

    @property
    def messages(self) -> list[ChannelMessage]:
        return [m for m in self._backend.messages[self._start :] if m.run_id in self._runs]

    async def take(self, n: int) -> list[ChannelMessage]:
        got = self.messages
        assert len(got) >= n, f"only {len(got)} of {n} messages were recorded"
        return got[:n]


class TestRecordingChannelBackend(ChannelContract):
    @pytest.fixture
    def backend(self) -> ChannelBackend:
        return RecordingChannelBackend()

    @asynccontextmanager
    async def watch(
        self, backend: ChannelBackend, runs: list[str]
    ) -> AsyncIterator[RecordingWatch]:
        assert isinstance(backend, RecordingChannelBackend)
        yield RecordingWatch(backend, runs)


class TestRedisChannelBackend(ChannelContract):
    @pytest.fixture
    def backend(self, redis_url: str, keys: Keys) -> Iterator[ChannelBackend]:
        backend = RedisChannelBackend(redis_url, keys)
        yield backend
        run(backend.aclose())

    @asynccontextmanager
    async def watch(self, backend: ChannelBackend, runs: list[str]) -> AsyncIterator[Watch]:
        assert isinstance(backend, RedisChannelBackend)
        watch = Watch()
        async with backend.subscriber(watch.add, runs=runs):
            yield watch
