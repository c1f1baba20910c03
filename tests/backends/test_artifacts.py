"""The ``ArtifactStore`` contract, passed by every built-in artifact store: the filesystem store
and the Redis store. Each inherits ``ArtifactContract`` and supplies ``store``. Tests of one
implementation only (the filesystem layout and atomic writes; Redis' ttl refresh and size limit)
stay in the implementation's own test file."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aethergraph.errors import ArtifactNotFoundError, ServiceUsageError
from aethergraph.keys import Keys
from aethergraph.services.builtins.artifacts import (
    INLINE_LIMIT,
    ArtifactStore,
    FilesystemArtifactStore,
    make_uri,
)
from aethergraph.services.builtins.redis_backends import RedisArtifactStore

from .helpers import in_threads, run

MISSING = make_uri("0" * 64)


def sha_uri(data: bytes) -> str:
    return "artifact://sha256/" + hashlib.sha256(data).hexdigest()


class ArtifactContract:
    """What every ``context.artifacts()`` store must do."""

    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError

    def test_bytes_are_content_addressed_and_idempotent(self, store: ArtifactStore) -> None:
        data = b"\x00\x01binary\xff" * 100

        async def body() -> None:
            uri = await store.save_bytes(data)
            assert uri == sha_uri(data)
            assert await store.save_bytes(data) == uri  # same content, same URI
            assert await store.save_bytes(bytearray(data)) == uri
            assert await store.save_bytes(memoryview(data)) == uri
            assert await store.exists(uri)
            assert await store.load_bytes(uri) == data
            other = await store.save_bytes(data + b"!")
            assert other != uri
            assert await store.load_bytes(other) == data + b"!"
            empty = await store.save_bytes(b"")
            assert empty == sha_uri(b"")
            assert await store.load_bytes(empty) == b""

        run(body())

    def test_text_and_canonical_json(self, store: ArtifactStore) -> None:
        async def body() -> None:
            assert await store.load_text(await store.save_text("héllo ✓")) == "héllo ✓"
            latin = await store.save_text("café", encoding="latin-1")
            assert await store.load_bytes(latin) == "café".encode("latin-1")
            j1 = await store.save_json({"b": 1, "a": [1, 2]})
            assert j1 == await store.save_json({"a": [1, 2], "b": 1})  # equal objects, equal URIs
            assert await store.load_bytes(j1) == b'{"a":[1,2],"b":1}'
            assert await store.load_json(j1) == {"a": [1, 2], "b": 1}
            assert await store.load_json(await store.save_json(None)) is None

        run(body())

    def test_files_round_trip_into_nested_destinations(
        self, store: ArtifactStore, tmp_path: Path
    ) -> None:
        data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: several chunks, the off-loop paths
        assert len(data) > INLINE_LIMIT
        src = tmp_path / "big.bin"
        src.write_bytes(data)

        async def body() -> None:
            uri = await store.save_file(src)
            assert uri == sha_uri(data)
            assert await store.save_bytes(data) == uri
            assert await store.save_file(str(src)) == uri  # str paths too
            dest = tmp_path / "out" / "nested" / "copy.bin"
            assert await store.load_file(uri, dest) == dest
            assert dest.read_bytes() == data
            assert await store.load_bytes(uri) == data

        run(body())

    def test_missing_artifacts(self, store: ArtifactStore, tmp_path: Path) -> None:
        async def body() -> None:
            assert await store.exists(MISSING) is False
            with pytest.raises(ArtifactNotFoundError, match=MISSING):
                await store.load_bytes(MISSING)
            with pytest.raises(FileNotFoundError, match=MISSING):  # also a FileNotFoundError
                await store.load_file(MISSING, tmp_path / "x")
            assert not (tmp_path / "x").exists()
            with pytest.raises(FileNotFoundError, match="no file"):
                await store.save_file(tmp_path / "nope.txt")

        run(body())

    def test_bad_arguments_raise_service_usage_error(
        self, store: ArtifactStore, tmp_path: Path
    ) -> None:
        uri = run(store.save_bytes(b"x"))
        bad_uris: list[Any] = [
            "artifact://md5/abc",
            "artifact://sha256/abc",
            "artifact://sha256/" + "G" * 64,
            "artifact://sha256/" + "A" * 64,  # hex digests are lowercase
            "file:///tmp/x",
            "",
        ]

        async def body() -> None:
            for bad in bad_uris:
                for call in (store.load_bytes(bad), store.exists(bad)):
                    with pytest.raises(ServiceUsageError, match="malformed artifact URI"):
                        await call
                with pytest.raises(ServiceUsageError, match="malformed artifact URI"):
                    await store.load_file(bad, tmp_path / "x")
            with pytest.raises(ServiceUsageError, match="URIs are str"):
                await store.load_bytes(123)  # type: ignore[arg-type]
            with pytest.raises(ServiceUsageError, match="save_text"):
                await store.save_bytes("text")  # type: ignore[arg-type]
            with pytest.raises(ServiceUsageError, match="save_json"):
                await store.save_bytes([1, 2])  # type: ignore[arg-type]
            with pytest.raises(ServiceUsageError, match="save_bytes"):
                await store.save_text(b"raw")  # type: ignore[arg-type]
            for obj in ({"x": object()}, {1, 2}, float("nan")):
                with pytest.raises(ServiceUsageError, match="JSON-compatible"):
                    await store.save_json(obj)
            with pytest.raises(ServiceUsageError, match="takes a path"):
                await store.save_file(123)  # type: ignore[arg-type]
            with pytest.raises(ServiceUsageError, match="dest must be a path"):
                await store.load_file(uri, 123)  # type: ignore[arg-type]

        run(body())

    def test_concurrent_saves_of_the_same_content(self, store: ArtifactStore) -> None:
        data = b"z" * 50_000
        uris: list[str] = []

        def save(_: int) -> None:
            uris.append(asyncio.run(store.save_bytes(data)))

        in_threads(save, 8)
        assert uris == [sha_uri(data)] * 8
        assert run(store.load_bytes(uris[0])) == data


class TestFilesystemArtifactStore(ArtifactContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return FilesystemArtifactStore(tmp_path / "store")


class TestRedisArtifactStore(ArtifactContract):
    @pytest.fixture
    def store(self, redis_url: str, keys: Keys) -> Iterator[ArtifactStore]:
        store = RedisArtifactStore(redis_url, keys)
        yield store
        run(store.aclose())
