"""NodeContext's own attribute names can never be shadowed by a custom service."""

from __future__ import annotations

from aethergraph.services.context import NodeContext
from aethergraph.services.runtime.registry import RESERVED_NAMES


def test_every_public_context_attribute_is_reserved() -> None:
    public = {name for name in dir(NodeContext) if not name.startswith("_")}
    assert public, "NodeContext should expose attributes"
    assert public <= RESERVED_NAMES, sorted(public - RESERVED_NAMES)
