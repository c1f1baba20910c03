"""Large values by reference: offload into the artifact store and back (aethergraph.offload)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aethergraph import offload as codec
from aethergraph.codec import CodecError, Offloaded, decode, dumps, encode, is_ref
from aethergraph.offload import contains_offloaded, materialize
from aethergraph.services.builtins.artifacts import URI_PREFIX, FilesystemArtifactStore


class Row(BaseModel):
    name: str
    when: dt.datetime


# -- offloading --------------------------------------------------------------------------------


def test_small_value_stays_inline(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    data = encode({"a": (1, 2)})
    assert asyncio.run(codec.offload(data, store, threshold=1000)) is data
    assert asyncio.run(codec.offload("x" * 100, store, threshold=1000)) == "x" * 100
    assert not any(tmp_path.iterdir())


def test_big_value_goes_to_store_and_comes_back(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    value = {"rows": [Row(name=str(i), when=dt.datetime(2024, 1, 1)) for i in range(50)]}
    data = encode(value)
    size = len(dumps(value).encode("utf-8"))

    ref = asyncio.run(codec.offload(data, store, threshold=100))
    assert is_ref(ref)
    assert ref["uri"].startswith(URI_PREFIX)
    assert ref["size"] == size
    assert len(json.dumps(ref)) < 200
    assert asyncio.run(store.exists(ref["uri"]))

    # the ref itself travels through JSON and is not re-offloaded
    ref = json.loads(json.dumps(ref))
    assert asyncio.run(codec.offload(ref, store, threshold=0)) is ref
    back = decode(asyncio.run(codec.inline(ref, store)))
    assert back == value
    assert asyncio.run(codec.inline(data, store)) is data  # not a ref: unchanged


def test_offload_entries_is_per_key(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    args = {"small": 1, "tiny": "x", "big": b"\x00" * 5000, "also_big": ["y" * 3000]}
    encoded = {k: encode(v) for k, v in args.items()}

    sent = asyncio.run(codec.offload_entries(encoded, store, threshold=1024))
    assert sent["small"] == 1
    assert sent["tiny"] == "x"
    assert is_ref(sent["big"])
    assert is_ref(sent["also_big"])
    assert encoded["big"] == encode(args["big"])  # the input mapping is not mutated

    wire = json.loads(json.dumps(sent))
    received = asyncio.run(codec.inline_entries(wire, store))
    assert {k: decode(v) for k, v in received.items()} == args


def test_ten_megabyte_bytes_round_trip(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    blob = bytes(range(256)) * (10 * 1024 * 1024 // 256)

    async def go() -> Any:
        sent = await codec.offload_entries({"blob": encode(blob)}, store, threshold=64 * 1024)
        assert is_ref(sent["blob"])
        assert len(json.dumps(sent)) < 300  # the message stays small
        return await codec.inline_entries(json.loads(json.dumps(sent)), store)

    back = decode(asyncio.run(go())["blob"])
    assert type(back) is bytes
    assert back == blob


def test_offload_validates_its_input(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    with pytest.raises(ValueError, match="threshold"):
        asyncio.run(codec.offload([1], store, threshold=-1))
    with pytest.raises(CodecError, match="encode"):
        asyncio.run(codec.offload({1, 2}, store, threshold=0))


def test_refs_decode_to_offloaded_and_materialize(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)

    async def main() -> None:
        big = {"rows": list(range(5000))}
        ref = await codec.offload(encode(big), store, threshold=1024)
        decoded = decode({"a": [ref, 1], "b": ref})
        assert isinstance(decoded["b"], Offloaded)
        assert contains_offloaded(decoded)
        # passing it on re-encodes the same reference, not the value
        assert encode(decoded)["b"] == ref
        assert await materialize(decoded, store) == {"a": [big, 1], "b": big}

    asyncio.run(main())
