"""The ``MemoryBackend`` contract (and the ``Memory`` front end on it), passed by every built-in
memory backend. Each backend inherits ``MemoryContract`` and supplies ``make`` (a backend with
the given bound). Tests of one implementation only (the in-process run bound, Redis' LTRIM /
PEXPIRE / chunked scan-back) stay in the implementation's own test file."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aethergraph.errors import ConfigurationError, ServiceUsageError
from aethergraph.keys import Keys
from aethergraph.services.builtins.memory import (
    InMemoryMemoryBackend,
    Memory,
    MemoryBackend,
    MemoryEvent,
)
from aethergraph.services.builtins.redis_backends import RedisMemoryBackend

from .helpers import in_threads, run

Make = Callable[..., MemoryBackend]


async def append(backend: MemoryBackend, run_id: str, kind: str, data: Any) -> MemoryEvent:
    return await backend.append(run_id=run_id, graph_id="g", node_id="n", kind=kind, data=data)


class MemoryContract:
    """What every ``context.memory()`` backend must do."""

    @pytest.fixture
    def make(self) -> Make:
        """``make(**options)``: a fresh backend (``max_events_per_run`` is the one option)."""
        raise NotImplementedError

    @pytest.fixture
    def backend(self, make: Make) -> MemoryBackend:
        return make()

    def test_seq_per_run_from_one_and_runs_are_isolated(self, backend: MemoryBackend) -> None:
        async def body() -> None:
            assert (await append(backend, "a", "k", 1)).seq == 1
            assert (await append(backend, "b", "k", 2)).seq == 1
            assert (await append(backend, "a", "k", 3)).seq == 2
            assert [e.data for e in await backend.recent("a")] == [1, 3]
            assert [e.data for e in await backend.recent("b")] == [2]
            assert await backend.recent("nobody") == []

        run(body())
        assert backend.snapshot("nobody") == []

    def test_clear_forgets_one_run_and_restarts_its_seq(self, backend: MemoryBackend) -> None:
        async def body() -> None:
            await append(backend, "a", "k", 1)
            await append(backend, "b", "k", 2)
            await backend.clear("a")
            await backend.clear("never-used")
            assert await backend.recent("a") == []
            assert [e.data for e in await backend.recent("b")] == [2]
            assert (await append(backend, "a", "k", 4)).seq == 1

        run(body())
        assert [e.data for e in backend.snapshot("a")] == [4]

    def test_recent_is_the_tail_oldest_first_and_filters_by_kind(
        self, backend: MemoryBackend
    ) -> None:
        async def body() -> None:
            for i in range(3):
                await append(backend, "r", "rare", {"i": i})
            for i in range(40):
                await append(backend, "r", "common", i)
            await append(backend, "r", "rare", {"i": 3})
            assert [e.seq for e in await backend.recent("r", 3)] == [42, 43, 44]
            assert [e.seq for e in await backend.recent("r")] == list(range(25, 45))  # n=20
            picked = await backend.recent("r", 3, kind="rare")
            assert [e.data for e in picked] == [{"i": 1}, {"i": 2}, {"i": 3}]
            assert [e.seq for e in picked] == [2, 3, 44]
            assert [e.seq for e in await backend.recent("r", 10, kind="rare")] == [1, 2, 3, 44]
            assert await backend.recent("r", 5, kind="none-such") == []
            assert len(await backend.recent("r", 1000)) == 44

        run(body())

    def test_events_carry_their_ids_and_survive_the_wire(self, backend: MemoryBackend) -> None:
        memory = Memory(backend, run_id="r", graph_id="g1", node_id="n1")

        async def body() -> list[MemoryEvent]:
            first = await memory.record("decision", {"pick": [1, 2], "why": "ok"})
            await memory.record("note")
            return [first, *await memory.recent(5)]

        first, *recent = run(body())
        snap = memory.snapshot()  # sync, outside any loop
        assert snap == recent
        assert snap[0] == first
        assert (first.run_id, first.graph_id, first.node_id) == ("r", "g1", "n1")
        assert [(e.seq, e.kind, e.data) for e in snap] == [
            (1, "decision", {"pick": [1, 2], "why": "ok"}),
            (2, "note", None),
        ]
        assert first.ts <= snap[1].ts
        assert MemoryEvent.from_dict(json.loads(json.dumps(first.to_dict()))) == first

    def test_record_stores_a_copy(self, backend: MemoryBackend) -> None:
        memory = Memory(backend, run_id="r", graph_id="g", node_id="n")
        data = {"items": [1]}
        run(memory.record("obs", data))
        data["items"].append(2)
        assert memory.snapshot()[0].data == {"items": [1]}

    def test_bounded_per_run_and_seq_keeps_counting(self, make: Make) -> None:
        backend = make(max_events_per_run=5)

        async def body() -> list[MemoryEvent]:
            for i in range(12):
                await append(backend, "r", "k", i)
            return await backend.recent("r", 100)

        recent = run(body())
        assert [e.seq for e in recent] == [8, 9, 10, 11, 12]
        assert [e.data for e in recent] == [7, 8, 9, 10, 11]
        assert backend.snapshot("r") == recent

    def test_bad_bound_is_a_configuration_error(self, make: Make) -> None:
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ConfigurationError, match="max_events_per_run"):
                make(max_events_per_run=bad)

    def test_seq_is_unique_and_in_list_order_across_threads_and_loops(
        self, backend: MemoryBackend
    ) -> None:
        per_thread, threads = 25, 6
        seqs: list[int] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            async def body() -> list[int]:
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
        assert [e.seq for e in backend.snapshot("run")] == list(range(1, total + 1))

    def test_bad_arguments_raise_service_usage_error(self, backend: MemoryBackend) -> None:
        memory = Memory(backend, run_id="r", graph_id="g", node_id="n")

        async def body() -> None:
            for kind in ("", None, 3):
                with pytest.raises(ServiceUsageError, match="non-empty str kind"):
                    await memory.record(kind)  # type: ignore[arg-type]
            for data in ({1, 2}, object(), {"x": float("nan")}, b"raw"):
                with pytest.raises(ServiceUsageError, match="JSON-compatible"):
                    await memory.record("obs", data)
            for n in (0, -3):
                with pytest.raises(ServiceUsageError, match="n >= 1"):
                    await memory.recent(n)
            for n in ("3", 2.0, True):
                with pytest.raises(ServiceUsageError, match="int n"):
                    await memory.recent(n)  # type: ignore[arg-type]
            with pytest.raises(ServiceUsageError, match="kind"):
                await memory.recent(3, kind=7)  # type: ignore[arg-type]

        run(body())
        assert memory.snapshot() == []  # nothing of a rejected record was stored


class TestInMemoryMemoryBackend(MemoryContract):
    @pytest.fixture
    def make(self) -> Make:
        return InMemoryMemoryBackend


class TestRedisMemoryBackend(MemoryContract):
    @pytest.fixture
    def make(self, redis_url: str, keys: Keys) -> Iterator[Make]:
        made: list[RedisMemoryBackend] = []

        def make(**options: Any) -> MemoryBackend:
            made.append(RedisMemoryBackend(redis_url, keys, **options))
            return made[-1]

        yield make
        for backend in made:
            run(backend.aclose())
