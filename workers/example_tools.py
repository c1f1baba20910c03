"""Example tools for a worker pool: ``aethergraph worker --tools example_tools``.

Copied into the worker image (``workers/Dockerfile``) when no tools package of your own is
given; replace it with yours. A worker serves exactly the ``@tool`` functions its ``--tools``
modules define (an allowlist), and clients must import the same module to trace their graphs.

``square`` is plain CPU work; ``total_and_store`` uses every shared built-in (channel, memory, kv,
artifacts) and the ``scratch`` service of ``bootstrap.py``, so one run of ``squares`` exercises
everything a worker needs from the broker.
"""

from __future__ import annotations

import json
from typing import Any

from aethergraph import NodeContext, graph_fn, tool


@tool(outputs=["y"])
def square(x: int) -> dict[str, Any]:
    return {"y": x * x}


@tool(outputs=["total", "uri", "worker"])
async def total_and_store(ys: list[int], *, context: NodeContext) -> dict[str, Any]:
    total = sum(ys)
    await context.channel().send_text(f"summing {len(ys)} squares")  # reaches the client live
    context.logger().info("total %d", total)  # so does this log record
    await context.memory().record("summed", {"n": len(ys), "total": total})
    await context.kv().set("last_total", total, ttl=3600)
    path = context.scratch().path("ys.json")  # the bootstrap's per-process service
    path.write_text(json.dumps(ys))
    uri = await context.artifacts().save_file(str(path))
    return {"total": total, "uri": uri, "worker": context.scratch().where()}


@tool(outputs=["size"])
def blob_size(blob: bytes) -> dict[str, Any]:
    """Big arguments travel through the artifact store (over AETHERGRAPH_OFFLOAD_THRESHOLD)."""
    return {"size": len(blob)}


@graph_fn(name="squares", outputs=["total", "uri", "worker"])
async def squares(n: int = 10):
    out = total_and_store(ys=[square(x=i)["y"] for i in range(n)])
    return {"total": out["total"], "uri": out["uri"], "worker": out["worker"]}


@graph_fn(name="measure", outputs=["size"])
async def measure(blob: bytes):
    return {"size": blob_size(blob=blob)["size"]}
