"""The demo graph behind ``aethergraph demo``: a small parameter sweep.

Eight simulations run concurrently (fan-out), each result is summarized, the best one is picked
(fan-in), a report is stored as an artifact, and progress is reported on the channel.
"""

from __future__ import annotations

import math
import random
from typing import Any

from aethergraph.services.context import NodeContext
from aethergraph.tracing.graph_fn import graph_fn
from aethergraph.tracing.tool import tool


@tool(outputs=["samples"])
def simulate(temperature: float, steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A toy Monte Carlo run: energy samples of a damped random walk at one temperature."""
    rng = random.Random(seed)
    energy, samples = 0.0, []
    for _ in range(steps):
        energy = 0.95 * energy + rng.gauss(0.0, math.sqrt(temperature))
        samples.append(energy * energy)
    return {"samples": samples}


@tool(outputs=["mean", "std"])
def summarize(samples: list[float]) -> dict[str, Any]:
    mean = sum(samples) / len(samples)
    var = sum((s - mean) ** 2 for s in samples) / max(len(samples) - 1, 1)
    return {"mean": mean, "std": math.sqrt(var)}


@tool(outputs=["best", "table"])
async def pick_best(
    temperatures: list[float], means: list[float], target: float, *, context: NodeContext
) -> dict[str, Any]:
    rows = sorted(zip(temperatures, means, strict=True), key=lambda r: abs(r[1] - target))
    await context.channel().send_text(f"closest to target {target}: T={rows[0][0]}")
    table = [{"temperature": t, "mean_energy": round(m, 3)} for t, m in rows]
    return {"best": rows[0][0], "table": table}


@tool(outputs=["uri"])
async def save_report(table: list[dict[str, Any]], *, context: NodeContext) -> dict[str, Any]:
    uri = await context.artifacts().save_json({"run_id": context.run_id, "table": table})
    await context.memory().record("report", {"uri": uri})
    return {"uri": uri}


@graph_fn(name="demo_sweep", inputs=["temperatures", "target"], outputs=["best", "report"])
async def demo_sweep(
    temperatures: list[float], target: float = 10.0, *, context: NodeContext
) -> Any:
    """Sweep temperatures, find the one whose mean energy is closest to ``target``."""
    await context.channel().send_text(f"sweeping {len(temperatures)} temperatures")
    stats = [
        summarize(samples=simulate(temperature=t, seed=i)["samples"])
        for i, t in enumerate(temperatures)
    ]
    best = pick_best(temperatures=temperatures, means=[s["mean"] for s in stats], target=target)
    report = save_report(table=best["table"])
    await context.channel().send_text(f"best temperature: {best['best']}")
    return {"best": best["best"], "report": report["uri"]}


DEFAULT_TEMPERATURES = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
