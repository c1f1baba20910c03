"""Tools the batch-job workers of the HPC tests serve: each says which Slurm job ran it."""

from __future__ import annotations

import os

from aethergraph import graph_fn, tool


@tool(outputs=["y", "job"])
def hpc_square(x: int) -> dict[str, object]:
    return {"y": x * x, "job": os.environ.get("SLURM_JOB_ID", "")}


@tool(outputs=["total"])
def hpc_total(ys: list[int]) -> dict[str, object]:
    return {"total": sum(ys)}


@tool(outputs=["jobs", "pids"])
def hpc_where(jobs: list[str]) -> dict[str, object]:
    return {"jobs": sorted(set(jobs)), "pids": [os.getpid()]}


@graph_fn(name="hpc_sum_of_squares", outputs=["total", "jobs"])
async def hpc_sum_of_squares(n: int):  # type: ignore[no-untyped-def]
    squares = [hpc_square(x=i) for i in range(n)]
    total = hpc_total(ys=[s["y"] for s in squares])
    where = hpc_where(jobs=[s["job"] for s in squares])
    return {"total": total["total"], "jobs": where["jobs"]}
