"""Quick start: two tools, one graph, run in-process.

python examples/quickstart.py
"""

from __future__ import annotations

from aethergraph import NodeContext, graph_fn, run, tool


@tool(outputs=["total"])
def sum_vec(xs: list[float]) -> dict:
    return {"total": sum(xs)}


@tool(outputs=["scaled"])
async def scale(x: float, factor: float) -> dict:
    return {"scaled": x * factor}


@graph_fn(name="stats", inputs=["xs"], outputs=["total", "scaled"])
async def stats(xs: list[float], *, context: NodeContext):
    out = sum_vec(xs=xs)  # a node: returns a handle at once, runs at once
    scaled = scale(x=out["total"], factor=10)  # wired to out: runs when out is done
    await context.channel().send_text(f"n={len(xs)}, total={out['total']}")  # waits for the value
    return {"total": out["total"], "scaled": scaled["scaled"]}


if __name__ == "__main__":
    result = run(stats, xs=[1.0, 2.0, 3.5])
    print(result)
    assert result == {"total": 6.5, "scaled": 65.0}
    print(stats.last_graph.to_mermaid())
