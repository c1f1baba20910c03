"""From samples to rows, pairwise ratios against raw Celery, and the printed table."""

from __future__ import annotations

import statistics
from typing import Any

from bench.measure import Sample, spread
from bench.workloads import (
    AG_CELERY,
    CHAIN,
    FAN,
    FLOOR,
    PAYLOAD,
    RAW_CELERY,
    REDIS_PING,
    WIDE,
    WORKER_SETTINGS,
    WORKLOADS,
    Sizes,
    tasks,
    title,
)

#: the primary figure of each workload: (unit, which way is better)
UNITS = {
    CHAIN: ("ms/hop", "lower"),
    FAN: ("tasks/s", "higher"),
    WIDE: ("CPU us/node", "lower"),
    PAYLOAD: ("s", "lower"),
    FLOOR: ("us", "lower"),
}


def _per_task(values: list[float], per: int, scale: float = 1.0) -> dict[str, float]:
    return {k: v / per * scale for k, v in spread(values).items()}


def build_row(workload: str, system: str, sample: Sample, s: Sizes) -> dict[str, Any]:
    """One table row: the workload's primary figure (median, min, max) plus client costs."""
    per = tasks(workload, system, s)
    unit, better = UNITS[workload]
    if workload == CHAIN:
        value = _per_task(sample.wall, per, 1e3)
    elif workload == FAN:
        wall = spread(sample.wall)
        value = {"median": per / wall["median"], "min": per / wall["max"], "max": per / wall["min"]}
    elif workload == WIDE:
        value = _per_task(sample.cpu, per, 1e6)
    else:
        value = spread(sample.wall)
    row: dict[str, Any] = {
        "workload": workload,
        "system": system,
        "unit": unit,
        "better": better,
        "repeats": len(sample.wall),
        "tasks": per,
        "value": value,
        "wall_s": spread(sample.wall),
        "client_cpu_us_per_task": statistics.median(sample.cpu) / per * 1e6,
        "client_bytes": statistics.median(sample.nbytes),
        "raw": {"wall_s": sample.wall, "client_cpu_s": sample.cpu, "client_bytes": sample.nbytes},
    }
    if sample.peak_rss:
        row["peak_rss_bytes"] = spread([float(b) for b in sample.peak_rss])
        row["peak_rss_bytes_per_task"] = statistics.median(sample.peak_rss) / per
        row["raw"]["peak_rss_bytes"] = sample.peak_rss
    return row


def floor_row(sample: Sample, rtt_medians: list[float], s: Sizes) -> dict[str, Any]:
    """The Redis PING row: the value is the round trip (us), per batch the median of s.pings."""
    row = build_row(FLOOR, REDIS_PING, sample, s)
    row["value"] = {k: v * 1e6 for k, v in spread(rtt_medians).items()}
    row["raw"]["median_rtt_s"] = rtt_medians
    return row


def _advantage(mine: float, theirs: float, better: str) -> float:
    """How many times better ``mine`` is than ``theirs`` (> 1: better, < 1: worse)."""
    return mine / theirs if better == "higher" else theirs / mine


def build_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every system against every raw Celery variant of the same workload, same run.

    ``ratio`` is system / raw Celery (medians); ``advantage`` turns it so that > 1 always means
    the system did better (faster, more tasks/s, less CPU, fewer bytes, less memory).
    """
    ratios = []
    for row in rows:
        if row["system"] in RAW_CELERY or row["workload"] == FLOOR:
            continue
        for base in rows:
            if base["workload"] != row["workload"] or base["system"] not in RAW_CELERY:
                continue
            figures = [
                (row["unit"], row["value"]["median"], base["value"]["median"], row["better"])
            ]
            if row["workload"] != WIDE:
                figures.append(
                    ("client CPU/task", row["client_cpu_us_per_task"],
                     base["client_cpu_us_per_task"], "lower")
                )  # fmt: skip
            figures.append(("client bytes", row["client_bytes"], base["client_bytes"], "lower"))
            if row["workload"] == WIDE and "peak_rss_bytes" in row and "peak_rss_bytes" in base:
                figures.append(
                    ("peak memory", row["peak_rss_bytes"]["median"],
                     base["peak_rss_bytes"]["median"], "lower")
                )  # fmt: skip
            for figure, mine, theirs, better in figures:
                if not mine or not theirs:
                    continue  # zero bytes on one side (in-process): a ratio says nothing
                ratios.append(
                    {
                        "workload": row["workload"],
                        "system": row["system"],
                        "versus": base["system"],
                        "figure": figure,
                        "ratio": mine / theirs,
                        "advantage": _advantage(mine, theirs, better),
                    }
                )
    return ratios


def furthest_from_goal(ratios: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The AetherGraph-on-Celery primary figure that is worst against any raw Celery variant."""
    mine = [
        q for q in ratios if q["system"] == AG_CELERY and q["figure"] == UNITS[q["workload"]][0]
    ]
    return min(mine, key=lambda q: q["advantage"]) if mine else None


def _size(n: float | None) -> str:
    if n is None:
        return ""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def _num(x: float) -> str:
    return f"{x:,.3g}" if x < 100 else f"{x:,.0f}"


def format_table(rows: list[dict[str, Any]], ratios: list[dict[str, Any]], s: Sizes) -> str:
    lines = ["worker settings (the same for both Celery sides):"]
    for side, settings in WORKER_SETTINGS.items():
        lines.append(f"  {side}: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    lines.append(f"every figure: median of {s.repeats} repeats [min - max], same run\n")
    vs = {
        (q["workload"], q["system"], q["versus"]): q
        for q in ratios
        if q["figure"] == UNITS[q["workload"]][0]
    }
    for workload in WORKLOADS:
        group = [r for r in rows if r["workload"] == workload]
        if not group:
            continue
        unit, better = UNITS[workload]
        bases = [r["system"] for r in group if r["system"] in RAW_CELERY]
        head = (
            f"  {'system':<46} {unit:>12} {'[min - max]':>21} {'CPU us/task':>11} "
            f"{'bytes/task':>11} {'peak mem/task':>13}"
        )
        head += "".join(f" {'x ' + _short(b):>13}" for b in bases)
        lines += [f"{title(workload, s)} ({unit}, {better} is better)", head]
        for r in group:
            v = r["value"]
            mem = r.get("peak_rss_bytes_per_task")
            nbytes = r["client_bytes"] / r["tasks"]
            line = (
                f"  {r['system']:<46} {_num(v['median']):>12} "
                f"{'[' + _num(v['min']) + ' - ' + _num(v['max']) + ']':>21} "
                f"{r['client_cpu_us_per_task']:>11,.0f} {_size(nbytes):>11} "
                f"{_size(mem):>13}"
            )
            for b in bases:
                q = vs.get((workload, r["system"], b))
                cell = "" if q is None else f"{q['advantage']:.2f}x"
                line += f" {cell:>13}"
            lines.append(line)
        lines.append("")
    lines.append(
        "x <raw variant>: how many times better than that raw Celery variant on the workload's "
        "figure (> 1: better, < 1: worse), median against median in this run."
    )
    worst = furthest_from_goal(ratios)
    if worst is not None:
        lines.append(
            f"furthest from 'at least as fast as raw Celery': {title(worst['workload'], s)} — "
            f"{worst['advantage']:.2f}x {worst['versus']}"
        )
    return "\n".join(lines)


def _short(system: str) -> str:
    return system.removeprefix("raw Celery: ").split("(")[0].split(",")[0].strip()
