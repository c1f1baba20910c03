"""The ``KVStore`` contract, passed by every built-in kv backend (huey's ``StorageTests`` idea).

``KVContract`` holds the tests; each backend inherits it and supplies the ``kv`` fixture and an
``expire`` hook (the one thing no interface method can do: make a key's ttl run out now). Tests
of one implementation only (the in-process purge, Redis' PX / PTTL) stay in
``tests/test_builtin_services.py`` and ``tests/test_redis_backends.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from aethergraph.errors import ServiceUsageError
from aethergraph.keys import Keys
from aethergraph.services.builtins.kv import InMemoryKV, KVStore
from aethergraph.services.builtins.redis_backends import RedisKV

from .helpers import in_threads, run, until

BAD_KEYS: list[Any] = ["", 3, None, b"k", ("a",)]
BAD_TTLS: list[Any] = [0, -1, -0.5, float("inf"), float("nan")]
NOT_SECONDS: list[Any] = ["5", True, [1]]
NOT_JSON: list[Any] = [b"\x00", {1, 2}, object(), {"x": float("nan")}, {"k": b"v"}]


class KVContract:
    """What every ``context.kv()`` backend must do."""

    @pytest.fixture
    def kv(self) -> KVStore:
        raise NotImplementedError

    async def expire(self, kv: KVStore, key: str) -> None:
        """Make the ttl of ``key`` (set with one) run out now."""
        raise NotImplementedError

    def test_round_trip_overwrite_delete_exists(self, kv: KVStore) -> None:
        async def body() -> None:
            assert await kv.get("missing") is None
            assert await kv.get("missing", "dflt") == "dflt"
            assert not await kv.exists("missing")
            await kv.set("k", {"a": [1, 2.5, None], "b": "x"})
            assert await kv.get("k") == {"a": [1, 2.5, None], "b": "x"}
            assert await kv.exists("k")
            await kv.set("k", 7)
            assert await kv.get("k") == 7
            assert await kv.delete("k") is True
            assert await kv.delete("k") is False
            assert not await kv.exists("k")
            assert await kv.get("k", "gone") == "gone"

        run(body())

    def test_values_keep_their_json_form(self, kv: KVStore) -> None:
        values: dict[str, Any] = {
            "none": None,
            "false": False,
            "zero": 0,
            "float": 1.5,
            "big": 2**60,
            "text": "héllo ✓",
            "empty": "",
            "list": [1, [2, [3]]],
            "tuple": (1, 2),  # JSON has no tuple: it comes back as a list, on every backend
            "dict": {"nested": {"k": [None, True]}},
        }

        async def body() -> None:
            for name, value in values.items():
                await kv.set(name, value)
            for name, value in values.items():
                expected = list(value) if isinstance(value, tuple) else value
                got = await kv.get(name, "absent")
                assert got == expected, name
                assert type(got) is type(expected), name
            assert await kv.get("none", "absent") is None  # a stored None is not "absent"
            assert await kv.exists("none")

        run(body())

    def test_stores_copies(self, kv: KVStore) -> None:
        value = {"items": [1]}

        async def body() -> None:
            await kv.set("k", value)
            value["items"].append(2)  # the caller mutates after set ...
            got = await kv.get("k")
            got["items"].append(3)  # ... and after get
            assert await kv.get("k") == {"items": [1]}

        run(body())

    def test_keys_are_independent_and_any_str(self, kv: KVStore) -> None:
        names = ["a", "A", "a:b", "a b", "ключ", "x" * 500, "*", "?", "[", "kv:a"]

        async def body() -> None:
            for i, name in enumerate(names):
                await kv.set(name, i)
            assert [await kv.get(n) for n in names] == list(range(len(names)))
            assert await kv.delete("a")
            assert await kv.get("A") == 1  # case matters; a glob-like key is just a name
            assert await kv.get("*") == 6

        run(body())

    def test_ttl_expires_and_a_plain_set_keeps_the_value(self, kv: KVStore) -> None:
        async def body() -> None:
            await kv.set("t", "v", ttl=60)
            await kv.set("forever", 1)
            await kv.set("fraction", 2, ttl=0.5)  # sub-second ttls are fine
            assert await kv.get("t") == "v"
            assert await kv.get("fraction") == 2
            await self.expire(kv, "t")
            assert await kv.get("t", "expired") == "expired"
            assert not await kv.exists("t")
            assert await kv.delete("t") is False  # an expired key is not "something deleted"
            assert await kv.get("forever") == 1
            await kv.set("t", "again")  # an expired key can be set again, without a ttl
            assert await kv.get("t") == "again"

        run(body())

    def test_bad_keys_ttls_and_values_raise_service_usage_error(self, kv: KVStore) -> None:
        async def body() -> None:
            for key in BAD_KEYS:
                expected = (
                    "non-empty" if key == "" else f"keys must be str, got {type(key).__name__}"
                )
                for call in (
                    kv.get(key),
                    kv.set(key, 1),
                    kv.delete(key),
                    kv.exists(key),
                ):
                    with pytest.raises(ServiceUsageError, match=expected):
                        await call
            for ttl in BAD_TTLS:
                with pytest.raises(ServiceUsageError, match="positive number of seconds"):
                    await kv.set("k", 1, ttl=ttl)
            for ttl in NOT_SECONDS:
                with pytest.raises(ServiceUsageError, match="must be seconds or None"):
                    await kv.set("k", 1, ttl=ttl)
            for value in NOT_JSON:
                with pytest.raises(ServiceUsageError, match=r"'blob'.*JSON.*artifacts\(\)"):
                    await kv.set("blob", value)
            assert not await kv.exists("k")  # nothing was stored by a rejected set
            assert not await kv.exists("blob")

        run(body())

    def test_errors_keep_the_standard_types_they_replaced(self, kv: KVStore) -> None:
        with pytest.raises(ValueError, match="non-empty"):
            run(kv.set("", 1))
        with pytest.raises(TypeError, match="keys must be str"):
            run(kv.get(3))  # type: ignore[arg-type]

    def test_shared_by_threads_each_with_its_own_loop(self, kv: KVStore) -> None:
        def worker(i: int) -> None:
            async def body() -> None:
                for j in range(20):
                    await kv.set(f"t{i}:{j}", [i, j])

            run(body())

        in_threads(worker, 4)

        async def check() -> None:
            for i in range(4):
                assert [await kv.get(f"t{i}:{j}") for j in range(20)] == [[i, j] for j in range(20)]

        run(check())


class FakeClock:
    """An injectable monotonic clock: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestInMemoryKV(KVContract):
    @pytest.fixture
    def kv(self) -> KVStore:
        self.clock = FakeClock()
        return InMemoryKV(clock=self.clock)

    async def expire(self, kv: KVStore, key: str) -> None:
        self.clock.now += 3600.0  # past every ttl the contract sets


class TestRedisKV(KVContract):
    @pytest.fixture
    def kv(self, redis_url: str, keys: Keys, raw: redis.Redis) -> Iterator[KVStore]:
        self.keys, self.raw = keys, raw
        store = RedisKV(redis_url, keys)
        yield store
        run(store.aclose())

    async def expire(self, kv: KVStore, key: str) -> None:
        assert self.raw.pttl(self.keys.kv(key)) > 0, "the key has no ttl to run out"
        self.raw.pexpire(self.keys.kv(key), 1)

        async def gone() -> bool:
            return not self.raw.exists(self.keys.kv(key))

        await until(gone, "Redis to expire the key")
