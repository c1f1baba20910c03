"""The PNG: one panel per figure, one bar per system (median), whiskers from min to max."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.workloads import (
    AG_CELERY,
    AG_LOCAL,
    ASYNCIO,
    CHAIN,
    DASK,
    FAN,
    FLOOR,
    PAYLOAD,
    RAW_CELERY,
    WIDE,
    Sizes,
    title,
)

COLOURS = {AG_CELERY: "#1f77b4", AG_LOCAL: "#6baed6", DASK: "#ff7f0e", ASYNCIO: "#9e9e9e"}
RAW_COLOUR = "#2ca02c"


def _panels(s: Sizes) -> list[tuple[str, str, str, Any]]:
    """(workload, panel title, x label, how to get (median, min, max) from a row)."""

    def primary(row: dict[str, Any]) -> tuple[float, float, float]:
        v = row["value"]
        return v["median"], v["min"], v["max"]

    def memory(row: dict[str, Any]) -> tuple[float, float, float] | None:
        peak = row.get("peak_rss_bytes")
        if peak is None:
            return None
        per = row["tasks"] * 1e3  # kB per node
        return peak["median"] / per, peak["min"] / per, peak["max"] / per

    def client_bytes(row: dict[str, Any]) -> tuple[float, float, float]:
        raw = row["raw"]["client_bytes"]
        return row["client_bytes"] / 1e6, min(raw) / 1e6, max(raw) / 1e6

    wide = f"wide graph of {s.wide:,} nodes"
    payload = f"payload of {s.payload / 1e6:g} MB"
    return [
        (CHAIN, title(CHAIN, s), "ms per hop (lower is better)", primary),
        (FAN, title(FAN, s), "tasks/s (higher is better)", primary),
        (WIDE, f"{wide}: client CPU", "CPU us per node (lower is better)", primary),
        (WIDE, f"{wide}: peak client memory", "kB per node (lower is better)", memory),
        (PAYLOAD, title(PAYLOAD, s), "seconds (lower is better)", primary),
        (PAYLOAD, f"{payload}: bytes through the client", "MB (lower is better)", client_bytes),
    ]


def draw(rows: list[dict[str, Any]], s: Sizes, path: Path) -> Path:
    """Write the chart to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = next((r for r in rows if r["workload"] == FLOOR), None)
    panels = _panels(s)
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.0 * len(panels)))
    for ax, (workload, heading, xlabel, figure) in zip(axes, panels, strict=True):
        names, medians, lows, highs, colours = [], [], [], [], []
        for row in (r for r in rows if r["workload"] == workload):
            got = figure(row)
            if got is None:
                continue
            median, low, high = got
            names.append(row["system"])
            medians.append(median)
            lows.append(max(median - low, 0.0))
            highs.append(max(high - median, 0.0))
            colours.append(
                RAW_COLOUR if row["system"] in RAW_CELERY else COLOURS.get(row["system"], "k")
            )
        if not names:
            ax.set_visible(False)
            continue
        y = list(range(len(names)))
        ax.barh(y, medians, xerr=[lows, highs], color=colours, capsize=3)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        positive = [m for m in medians if m > 0]
        if positive and max(positive) / min(positive) > 50:
            ax.set_xscale("log")
        if workload == CHAIN and floor is not None:
            ping_ms = floor["value"]["median"] / 1e3
            ax.axvline(ping_ms, color="red", linestyle="--", linewidth=1)
            ax.text(ping_ms, -0.6, " Redis PING", color="red", fontsize=7, va="bottom")
        ax.set_title(heading, fontsize=10, loc="left")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        for yi, m in zip(y, medians, strict=True):
            ax.text(m, yi, f" {m:,.3g}" if m < 1000 else f" {m:,.0f}", va="center", fontsize=7)
    fig.suptitle(
        "AetherGraph vs raw Celery, Dask and asyncio — median of repeats, whiskers min-max",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
