"""A custom service (as in the services tutorial) used from a graph body and from a tool.

python examples/custom_services.py
"""

from __future__ import annotations

import asyncio
import itertools

from aethergraph import graph_fn, run, start_server, stop_server, tool
from aethergraph.services.runtime.base import Service
from aethergraph.services.runtime.registry import register_context_service


class Trainer(Service):
    """Stands in for a cluster client: jobs complete after a few status checks."""

    async def start(self) -> None:
        self._ids = itertools.count(1)
        self._jobs: dict[str, int] = {}

    async def submit(self, spec: dict) -> str:
        job_id = f"job-{next(self._ids)}"
        self._jobs[job_id] = int(spec.get("epochs", 1))
        self.ctx().logger().info("submitted %s", job_id)
        return job_id

    async def inspect_job(self, job_id: str) -> dict:
        await asyncio.sleep(0.01)
        return {"job_id": job_id, "status": "COMPLETED"}


@tool(name="wait_for_training", outputs=["ready"])
async def wait_for_training(job_id: str, *, context) -> dict:
    info = await context.trainer().inspect_job(job_id)
    return {"ready": info["status"] == "COMPLETED"}


@graph_fn(name="train_and_wait", outputs=["job_id", "done"])
async def train_and_wait(spec: dict, *, context):
    job_id = await context.trainer().submit(spec)
    ready = await wait_for_training(job_id=job_id, context=context)
    return {"job_id": job_id, "done": ready["ready"]}


if __name__ == "__main__":
    server = start_server()  # starts registered services now, and later ones on registration
    register_context_service("trainer", Trainer())
    try:
        result = run(train_and_wait, spec={"epochs": 3})
        print(result)
        assert result == {"job_id": "job-1", "done": True}
    finally:
        stop_server()  # close() on every started service
