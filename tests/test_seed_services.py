"""Tutorial 7 (custom services), example by example.

Each class and graph of the tutorial is copied as written. Where the tutorial leaves a backend
call to the reader (``_submit_to_cluster``, ``_upload``, ``_slow_cpu_fn`` ...), a subclass in this
module fills it in with a small real implementation (an in-memory job table, files under
``tmp_path``), keeping the tutorial's class and method shapes.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aethergraph import (
    GraphFunction,
    NodeContext,
    current_registry,
    graph_fn,
    run,
    start_server,
    stop_server,
    tool,
)
from aethergraph.services.runtime.base import Service
from aethergraph.services.runtime.registry import register_context_service

# fmt: off
# ---------------------------------------------------------------------------------------------
# Tutorial code, as written
# ---------------------------------------------------------------------------------------------

# §2 Step 1: Define a service class
class Trainer(Service):
    async def submit(self, spec: dict) -> str:
        """Submit a training job to your cluster/scheduler."""
        job_id = await self._submit_to_cluster(spec)  # implement backend call
        return job_id

    async def inspect_job(self, job_id: str) -> dict:
        status = await self._query_cluster(job_id)    # implement backend call
        return {"job_id": job_id, "status": status}


# §1: using a registered service
@graph_fn(name="demo_trainer")
async def demo_trainer(*, context):
    job_id = await context.trainer().submit({"epochs": 10})
    return {"job_id": job_id}


# §3 Example A — Submit and track a job
@graph_fn(name="train_and_wait", outputs=["job_id", "done"])
async def train_and_wait(spec: dict, *, context):
    job_id = await context.trainer().submit(spec)
    ready = await wait_for_training(job_id=job_id, context=context)
    return {"job_id": job_id, "done": ready["ready"]}

@tool(name="wait_for_training", outputs=["ready"])
async def wait_for_training(job_id: str, *, context) -> dict:
    info = await context.trainer().inspect_job(job_id)
    return {"ready": info["status"] == "COMPLETED"}


# §3 Example B — Custom storage wrapper
class Storage(Service):
    async def put(self, local_path: str, key: str) -> str:
        uri = await self._upload(local_path, key)  # implement upload
        self.ctx().logger().info("storage.put", extra={"uri": uri})
        return uri

    async def get(self, uri: str, dest: str) -> None:
        await self._download(uri, dest)

@graph_fn(name="upload_report", outputs=["uri"])
async def upload_report(*, context):
    uri = await context.storage().put("/tmp/report.pdf", key="reports/2025-01-01.pdf")
    return {"uri": uri}


# §4 A) Service-wide mutex
class CounterService(Service):
    def __init__(self):
        super().__init__()
        self._value = 0
        # Decorate incr with the bound service-wide mutex
        # The entire method runs under a critical section
        self.incr = self.critical()(self.incr)  # type: ignore

    async def incr(self, n: int = 1) -> int:
        self._value += n
        await asyncio.sleep(0)  # yield to event loop
        return self._value


# §4 B) Offload blocking work
class Heavy(Service):
    async def compute(self, x: int) -> int:
        return await self.run_blocking(self._slow_cpu_fn, x)  # threadpool offload

    def _slow_cpu_fn(self, x: int) -> int:
        ...  # pure CPU work


# §5 Service lifecycle
class Tracker(Service):
    async def start(self):
        self._client = ...  # open DB/HTTP client

    async def close(self):
        if getattr(self, "_client", None):
            await self._client.aclose()


# §6 Testing & swapping implementations
class FakeTrainer(Service):
    async def submit(self, spec: dict) -> str:
        return "job-test-123"

    async def inspect_job(self, job_id: str) -> dict:
        return {"job_id": job_id, "status": "COMPLETED"}


# §8 Callable services
class Predictor(Service):
    async def __call__(self, prompt: str) -> str:
        return await self.generate(prompt)

    async def generate(self, prompt: str) -> str:
        ...
# fmt: on


# ---------------------------------------------------------------------------------------------
# Minimal real backends for what the tutorial leaves to the reader
# ---------------------------------------------------------------------------------------------


class InMemoryTrainer(Trainer):
    """A "cluster" that is a job table in memory; jobs finish with ``final_status``."""

    def __init__(self, final_status: str = "COMPLETED") -> None:
        super().__init__()
        self.final_status = final_status
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (method, node_id of the caller)

    async def _submit_to_cluster(self, spec: dict) -> str:
        await asyncio.sleep(0)
        job_id = f"job-{len(self.jobs) + 1}"
        self.jobs[job_id] = {"spec": dict(spec), "status": self.final_status}
        self.calls.append(("submit", self.ctx().node_id))
        return job_id

    async def _query_cluster(self, job_id: str) -> str:
        await asyncio.sleep(0)
        self.calls.append(("inspect", self.ctx().node_id))
        return self.jobs[job_id]["status"]


class LocalStorage(Storage):
    """A "bucket" directory; local paths are resolved inside a sandbox directory."""

    def __init__(self, bucket: Path, sandbox: Path) -> None:
        super().__init__()
        self.bucket = bucket
        self.sandbox = sandbox

    def local(self, path: str) -> Path:
        return self.sandbox / path.lstrip("/")

    async def _upload(self, local_path: str, key: str) -> str:
        target = self.bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        await self.run_blocking(shutil.copyfile, self.local(local_path), target)
        return f"bucket://{key}"

    async def _download(self, uri: str, dest: str) -> None:
        key = uri.removeprefix("bucket://")
        target = self.local(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        await self.run_blocking(shutil.copyfile, self.bucket / key, target)


class SumOfSquares(Heavy):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def _slow_cpu_fn(self, x: int) -> int:
        self.threads.append(threading.current_thread().name)
        return sum(i * i for i in range(x))


class FakeAsyncClient:
    """Stands in for an HTTP/DB client with an async ``aclose()``."""

    def __init__(self) -> None:
        self.closed = False
        self.requests: list[str] = []

    async def get_status(self, job_id: str) -> str:
        if self.closed:
            raise RuntimeError("client is closed")
        self.requests.append(job_id)
        return "RUNNING"

    async def aclose(self) -> None:
        self.closed = True


class ClientTracker(Tracker):
    def __init__(self) -> None:
        super().__init__()
        self.clients: list[FakeAsyncClient] = []

    async def start(self):
        await super().start()
        self._client = FakeAsyncClient()
        self.clients.append(self._client)

    async def job_status(self, job_id: str) -> str:
        return await self._client.get_status(job_id)


class EchoPredictor(Predictor):
    async def generate(self, prompt: str) -> str:
        await asyncio.sleep(0)
        return f"echo:{prompt}"


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[None]:
    """``start_server()`` as in the tutorial, stopped afterwards."""
    start_server()
    try:
        yield
    finally:
        stop_server()


# ---------------------------------------------------------------------------------------------
# §1 / §2: minimal service
# ---------------------------------------------------------------------------------------------


def test_trainer_backend_calls_are_left_to_subclasses() -> None:
    async def main() -> None:
        await Trainer().submit({"epochs": 1})

    with pytest.raises(AttributeError, match="_submit_to_cluster"):
        asyncio.run(main())


def test_register_after_start_server_as_in_the_tutorial() -> None:
    try:
        # fmt: off
        start_server()  # start sidecar so services can be wired

        trainer_service = Trainer()
        register_context_service("trainer", trainer_service)
        # fmt: on

        @graph_fn(name="sts_step2_lookup", outputs=["same"])
        async def lookup(*, context: NodeContext) -> dict[str, bool]:
            return {"same": context.trainer() is trainer_service}

        assert run(lookup) == {"same": True}
        # the tutorial's Trainer leaves the backend call to be implemented
        with pytest.raises(AttributeError, match="_submit_to_cluster"):
            run(demo_trainer)
    finally:
        stop_server()


def test_demo_trainer_with_an_implemented_backend(server: None) -> None:
    trainer_service = InMemoryTrainer()
    register_context_service("trainer", trainer_service)

    result = run(demo_trainer)

    assert result == {"job_id": "job-1"}
    assert trainer_service.jobs == {"job-1": {"spec": {"epochs": 10}, "status": "COMPLETED"}}
    assert isinstance(demo_trainer, GraphFunction)
    assert current_registry().get(nspace="graphfn", name="demo_trainer") is demo_trainer


def test_demo_trainer_shares_one_instance_across_runs(server: None) -> None:
    trainer_service = InMemoryTrainer()
    register_context_service("trainer", trainer_service)

    assert run(demo_trainer) == {"job_id": "job-1"}
    assert run(demo_trainer) == {"job_id": "job-2"}
    assert sorted(trainer_service.jobs) == ["job-1", "job-2"]


def test_registered_service_is_reachable_from_any_node(server: None) -> None:
    trainer_service = InMemoryTrainer()
    register_context_service("trainer", trainer_service)

    @tool(name="sts_submit_from_tool", outputs=["job_id"])
    async def submit_from_tool(spec: dict, *, context: NodeContext) -> dict[str, str]:
        job_id = await context.trainer().submit(spec)
        return {"job_id": job_id}

    @graph_fn(name="sts_any_node", outputs=["from_body", "from_tool"])
    async def any_node(*, context: NodeContext) -> dict[str, Any]:
        spec = {"lr": 0.1}
        from_body = await context.trainer().submit(spec)
        handle = submit_from_tool(spec={"lr": 0.2})
        return {"from_body": from_body, "from_tool": handle["job_id"]}

    result = run(any_node)

    assert result == {"from_body": "job-1", "from_tool": "job-2"}
    assert trainer_service.jobs["job-2"]["spec"] == {"lr": 0.2}
    assert trainer_service.calls == [("submit", "graph"), ("submit", "sts_submit_from_tool_0")]


def test_context_accessor_returns_the_registered_instance() -> None:
    trainer_service = InMemoryTrainer()
    register_context_service("trainer", trainer_service)
    seen: list[Any] = []

    @graph_fn(name="sts_accessor_identity")
    async def identity(*, context: NodeContext) -> dict[str, bool]:
        seen.append(context.trainer())
        return {"same": context.trainer() is trainer_service}

    assert run(identity) == {"same": True}
    assert seen == [trainer_service]


# ---------------------------------------------------------------------------------------------
# §3 Example A: submit and track a job
# ---------------------------------------------------------------------------------------------


def test_train_and_wait_completed_job() -> None:
    trainer_service = InMemoryTrainer(final_status="COMPLETED")
    register_context_service("trainer", trainer_service)

    result = run(train_and_wait, spec={"epochs": 3})

    assert result == {"job_id": "job-1", "done": True}
    assert list(result) == ["job_id", "done"]
    graph = train_and_wait.last_graph
    assert [(n.tool, n.status) for n in graph.nodes.values()] == [("wait_for_training", "done")]
    [node_id] = graph.nodes
    # the body submitted, the tool node inspected (with its own context)
    assert trainer_service.calls == [("submit", "graph"), ("inspect", node_id)]


def test_train_and_wait_running_job_is_not_done() -> None:
    register_context_service("trainer", InMemoryTrainer(final_status="RUNNING"))

    assert run(train_and_wait, spec={"epochs": 3}) == {"job_id": "job-1", "done": False}


def test_wait_for_training_outside_a_graph_is_plain_python() -> None:
    trainer_service = InMemoryTrainer()
    trainer_service.jobs["job-9"] = {"spec": {}, "status": "COMPLETED"}
    register_context_service("trainer", trainer_service)

    assert asyncio.run(wait_for_training(job_id="job-9")) == {"ready": True}
    # outside a graph the tool still gets a context, so the service's ctx() works
    assert trainer_service.calls == [("inspect", "wait_for_training")]


# ---------------------------------------------------------------------------------------------
# §3 Example B: custom storage wrapper
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    sandbox = tmp_path / "sandbox"
    report = sandbox / "tmp" / "report.pdf"
    report.parent.mkdir(parents=True)
    report.write_bytes(b"%PDF-1.4 quarterly report")
    service = LocalStorage(bucket=tmp_path / "bucket", sandbox=sandbox)
    register_context_service("storage", service)
    return service


def test_upload_report_uploads_and_logs_the_uri(
    storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aethergraph.node")

    result = run(upload_report)

    assert result == {"uri": "bucket://reports/2025-01-01.pdf"}
    stored = storage.bucket / "reports" / "2025-01-01.pdf"
    assert stored.read_bytes() == b"%PDF-1.4 quarterly report"
    records = [r for r in caplog.records if r.getMessage() == "storage.put"]
    assert len(records) == 1
    record = records[0]
    assert record.uri == "bucket://reports/2025-01-01.pdf"
    assert record.graph_id == "upload_report"
    assert record.node_id == "graph"
    assert record.run_id == upload_report.last_graph.run_id


def test_storage_get_round_trips_and_logs_from_tool_nodes(
    storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aethergraph.node")

    @tool(name="sts_put_tool", outputs=["uri"])
    async def put_tool(path: str, key: str, *, context: NodeContext) -> dict[str, str]:
        return {"uri": await context.storage().put(path, key=key)}

    @tool(name="sts_get_tool", outputs=["dest"])
    async def get_tool(uri: str, dest: str, *, context: NodeContext) -> dict[str, str]:
        await context.storage().get(uri, dest)
        return {"dest": dest}

    @graph_fn(name="sts_storage_round_trip", outputs=["uri", "dest"])
    async def round_trip() -> dict[str, Any]:
        put = put_tool(path="/tmp/report.pdf", key="copies/r.pdf")
        got = get_tool(uri=put["uri"], dest="/restored/r.pdf")
        return {"uri": put["uri"], "dest": got["dest"]}

    result = run(round_trip)

    assert result == {"uri": "bucket://copies/r.pdf", "dest": "/restored/r.pdf"}
    assert storage.local("/restored/r.pdf").read_bytes() == b"%PDF-1.4 quarterly report"
    [record] = [r for r in caplog.records if r.getMessage() == "storage.put"]
    assert record.node_id == "sts_put_tool_0"
    assert record.graph_id == "sts_storage_round_trip"


def test_intro_snippet_trainer_storage_tracker(tmp_path: Path) -> None:
    """The tutorial's opening snippet, with all three services registered."""

    class IntroStorage(LocalStorage):
        async def put(self, local_path: str, key: str | None = None) -> str:
            return await super().put(local_path, key or Path(local_path).name)

    sandbox = tmp_path / "sandbox"
    (sandbox / "tmp").mkdir(parents=True)
    (sandbox / "tmp" / "report.pdf").write_bytes(b"intro")
    storage_service = IntroStorage(bucket=tmp_path / "bucket", sandbox=sandbox)
    tracker_service = ClientTracker()
    register_context_service("trainer", InMemoryTrainer())
    register_context_service("storage", storage_service)
    register_context_service("tracker", tracker_service)

    @graph_fn(name="sts_intro", outputs=["status"])
    async def intro(spec: dict, *, context: NodeContext) -> dict[str, Any]:
        # fmt: off
        # Later inside a graph or tool
        await context.trainer().submit(spec)
        await context.storage().put("/tmp/report.pdf")
        status = await context.tracker().job_status(job_id)
        # fmt: on
        return {"status": status}

    job_id = "job-1"  # the snippet's free variable
    result = run(intro, spec={"epochs": 1})

    assert result == {"status": "RUNNING"}
    assert (tmp_path / "bucket" / "report.pdf").read_bytes() == b"intro"
    assert tracker_service.clients[0].requests == [job_id]


# ---------------------------------------------------------------------------------------------
# §4 concurrency & shared state
# ---------------------------------------------------------------------------------------------


@tool(name="sts_bump", outputs=["value"])
async def sts_bump(*, context: NodeContext) -> dict[str, int]:
    return {"value": await context.counter().incr()}


@graph_fn(name="sts_fan_out_counter", outputs=["values"])
async def sts_fan_out_counter(n: int) -> dict[str, Any]:
    handles = [sts_bump() for _ in range(n)]
    return {"values": [h["value"] for h in handles]}


def test_counter_service_incr_under_concurrent_nodes() -> None:
    counter = CounterService()
    register_context_service("counter", counter)

    result = run(sts_fan_out_counter, n=40)

    # every incr saw a distinct value: no two calls interleaved inside the critical section
    assert sorted(result["values"]) == list(range(1, 41))
    assert counter._value == 40
    assert len(sts_fan_out_counter.last_graph.nodes) == 40


def test_counter_service_incr_with_step() -> None:
    counter = CounterService()

    async def main() -> list[int]:
        return [await counter.incr(), await counter.incr(5), await counter.incr(n=2)]

    assert asyncio.run(main()) == [1, 6, 8]
    assert counter.incr.__name__ == "incr"


def test_heavy_compute_offloads_to_a_worker_thread() -> None:
    heavy = SumOfSquares()
    register_context_service("heavy", heavy)

    @tool(name="sts_heavy_tool", outputs=["value"])
    async def heavy_tool(x: int, *, context: NodeContext) -> dict[str, int]:
        return {"value": await context.heavy().compute(x)}

    @graph_fn(name="sts_heavy", outputs=["body", "node"])
    async def heavy_graph(x: int, *, context: NodeContext) -> dict[str, Any]:
        in_body = await context.heavy().compute(x)
        node = heavy_tool(x=x + 1)
        return {"body": in_body, "node": node["value"]}

    result = run(heavy_graph, x=10)

    assert result == {"body": sum(i * i for i in range(10)), "node": sum(i * i for i in range(11))}
    caller_threads = {threading.current_thread().name, "aethergraph-runtime"}
    assert len(heavy.threads) == 2
    assert not caller_threads & set(heavy.threads)


# ---------------------------------------------------------------------------------------------
# §5 lifecycle
# ---------------------------------------------------------------------------------------------


def test_tracker_start_opens_client_and_stop_server_closes_it() -> None:
    tracker_service = ClientTracker()
    register_context_service("tracker", tracker_service)
    start_server()
    try:
        assert len(tracker_service.clients) == 1
        client = tracker_service.clients[0]
        assert client.closed is False

        @graph_fn(name="sts_tracker_status", outputs=["status"])
        async def status_graph(job_id: str, *, context: NodeContext) -> dict[str, str]:
            return {"status": await context.tracker().job_status(job_id)}

        assert run(status_graph, job_id="job-7") == {"status": "RUNNING"}
        assert client.requests == ["job-7"]
        assert tracker_service.clients == [client]  # not started again by the run
    finally:
        stop_server()
    assert client.closed is True


def test_tracker_close_without_start_is_a_no_op() -> None:
    tracker_service = ClientTracker()

    asyncio.run(tracker_service.close())

    assert tracker_service.clients == []


# ---------------------------------------------------------------------------------------------
# §6 swapping implementations
# ---------------------------------------------------------------------------------------------


def test_fake_trainer_swaps_the_real_one() -> None:
    real = InMemoryTrainer(final_status="RUNNING")
    register_context_service("trainer", real)
    assert run(train_and_wait, spec={"epochs": 1}) == {"job_id": "job-1", "done": False}

    # Test setup
    register_context_service("trainer", FakeTrainer())
    # All code using context.trainer() now talks to the fake.

    assert run(train_and_wait, spec={"epochs": 1}) == {"job_id": "job-test-123", "done": True}
    assert run(demo_trainer) == {"job_id": "job-test-123"}
    assert list(real.jobs) == ["job-1"]  # the real one was not used again


# ---------------------------------------------------------------------------------------------
# §8 callable services
# ---------------------------------------------------------------------------------------------


def test_callable_predictor_service() -> None:
    register_context_service("predictor", EchoPredictor())

    @tool(name="sts_predict_tool", outputs=["text"])
    async def predict_tool(prompt: str, *, context: NodeContext) -> dict[str, str]:
        return {"text": await context.predictor(prompt)}

    @graph_fn(name="sts_predictor", outputs=["sugar", "explicit", "node"])
    async def predictor_graph(*, context: NodeContext) -> dict[str, Any]:
        # fmt: off
        # After registration as "predictor":
        text = await context.predictor("hello")               # calls __call__
        sugar = text
        text = await context.predictor().generate("hello")    # explicit method
        # fmt: on
        return {"sugar": sugar, "explicit": text, "node": predict_tool(prompt="world")["text"]}

    result = run(predictor_graph)

    assert result == {"sugar": "echo:hello", "explicit": "echo:hello", "node": "echo:world"}


def test_predictor_call_keyword_arguments() -> None:
    register_context_service("predictor", EchoPredictor())

    @graph_fn(name="sts_predictor_kw", outputs=["text"])
    async def predictor_kw(*, context: NodeContext) -> dict[str, str]:
        return {"text": await context.predictor(prompt="kw")}

    assert run(predictor_kw) == {"text": "echo:kw"}
