"""Large values by reference: into the artifact store on the way out, back on the way in.

Keeps Redis messages small. An encoded value (see :mod:`aethergraph.codec`) whose JSON is over a
threshold is saved once, content-addressed, in an :class:`ArtifactStore`, and the message
carries only ``{"__ag__": "ref", "uri": ..., "size": ...}``. The receiving side decodes that to an
:class:`~aethergraph.codec.Offloaded` marker, which travels on as the same ref when passed to
another tool — a large value moves from worker to worker without passing through the client —
and is loaded (:func:`materialize`) only where the value is really used.

The store is always passed in explicitly: the client uses its executor's store, a worker its own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aethergraph.codec import TAG, Offloaded, decode, is_ref, serialize
from aethergraph.errors import CodecError, ConfigurationError
from aethergraph.services.builtins.artifacts import ArtifactStore

_SCALARS = frozenset({str, int, bool, type(None)})


def contains_offloaded(value: Any) -> bool:
    """Whether ``value`` (a decoded structure) holds an :class:`Offloaded` anywhere."""
    t = type(value)
    if t in _SCALARS:
        return False
    if t is Offloaded:
        return True
    if isinstance(value, dict):
        return any(contains_offloaded(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_offloaded(v) for v in value)
    return False


async def materialize(value: Any, store: ArtifactStore) -> Any:
    """``value`` with every :class:`Offloaded` replaced by the value it stands for."""
    if not contains_offloaded(value):
        return value
    if type(value) is Offloaded:
        return decode(await inline(value.marker(), store), accepted=value.accepted)
    if isinstance(value, dict):
        keys = list(value)
        items = await asyncio.gather(*(materialize(value[k], store) for k in keys))
        return dict(zip(keys, items, strict=True))
    items = await asyncio.gather(*(materialize(v, store) for v in value))
    return type(value)(items) if type(value) in (list, tuple, set, frozenset) else items


def _big(data: Any, threshold: int) -> bytes | None:
    """The serialized bytes of ``data`` when they exceed ``threshold``; ``None`` otherwise."""
    if type(threshold) is not int or threshold < 0:
        raise ConfigurationError(
            f"offload threshold must be an int >= 0 (bytes), not {threshold!r}"
        )
    if is_ref(data):
        return None
    if type(data) in _SCALARS and (type(data) is not str or len(data) * 6 + 2 <= threshold):
        return None  # provably small (a JSON char is at most 6 bytes): skip serializing
    raw = serialize(data).encode("utf-8")
    return raw if len(raw) > threshold else None


async def offload(data: Any, store: ArtifactStore, *, threshold: int) -> Any:
    """``data`` (already encoded) itself, or a ref to it in ``store`` when its JSON is too big.

    Keeps Redis messages small: a value over ``threshold`` bytes is saved once, content-addressed,
    and the message carries only ``{"__ag__": "ref", "uri": ..., "size": ...}``.
    """
    raw = _big(data, threshold)
    if raw is None:
        return data
    return {TAG: "ref", "uri": await store.save_bytes(raw), "size": len(raw)}


async def inline(data: Any, store: ArtifactStore) -> Any:
    """The encoded value a ref points to (loaded from ``store``); other ``data`` unchanged."""
    if not is_ref(data):
        return data
    raw = await store.load_bytes(data["uri"])
    size = data.get("size")
    if isinstance(size, int) and len(raw) != size:
        raise CodecError(f"artifact {data['uri']} has {len(raw)} bytes, the ref says {size}")
    return json.loads(raw)


def needs_offload(mapping: dict[str, Any], threshold: int) -> bool:
    """Whether :func:`offload_entries` would move any entry (cheap: small scalars are skipped)."""
    return any(_big(v, threshold) is not None for v in mapping.values())


async def offload_entries(
    mapping: dict[str, Any], store: ArtifactStore, *, threshold: int
) -> dict[str, Any]:
    """:func:`offload` per top-level entry: big entries go to ``store``, small ones stay inline."""
    out = dict(mapping)
    big = {k: raw for k, v in mapping.items() if (raw := _big(v, threshold)) is not None}
    uris = await asyncio.gather(*(store.save_bytes(raw) for raw in big.values()))
    for (key, raw), uri in zip(big.items(), uris, strict=True):
        out[key] = {TAG: "ref", "uri": uri, "size": len(raw)}
    return out


async def inline_entries(mapping: dict[str, Any], store: ArtifactStore) -> dict[str, Any]:
    """:func:`inline` per top-level entry (the reverse of :func:`offload_entries`)."""
    out = dict(mapping)
    refs = [k for k, v in mapping.items() if is_ref(v)]
    values = await asyncio.gather(*(inline(mapping[k], store) for k in refs))
    out.update(zip(refs, values, strict=True))
    return out


__all__ = [
    "contains_offloaded",
    "inline",
    "inline_entries",
    "materialize",
    "needs_offload",
    "offload",
    "offload_entries",
]
