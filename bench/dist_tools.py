"""The tools of the distributed benchmark, served by AetherGraph workers (by file path).

Module-level ``@tool`` functions only, so that a worker can import this file by path. They mirror
the tasks of :mod:`bench.raw_celery_app` one for one: same work, same return values.
"""

from __future__ import annotations

import random
from typing import Any

from aethergraph import tool


@tool(outputs=["y"])
def dist_noop(x: int) -> dict[str, Any]:
    """A no-op hop: returns its input."""
    return {"y": x}


@tool(outputs=["n"])
def dist_total(xs: list[int]) -> dict[str, Any]:
    """The fan-in reducer: how many values it received."""
    return {"n": len(xs)}


@tool(outputs=["blob"])
def dist_make_blob(size: int) -> dict[str, Any]:
    """A ``size``-byte random value (random, so no encoding gets it cheaper than base64)."""
    return {"blob": random.randbytes(size)}


@tool(outputs=["n"])
def dist_blob_size(blob: bytes) -> dict[str, Any]:
    """The consumer of the payload: its length."""
    return {"n": len(blob)}
