"""Custom-service semantics beyond the tutorial's examples.

``critical()`` under real contention (many nodes, several threads and event loops), ``ctx()``
under concurrency and in ``run_blocking``, the start/close lifecycle, registration errors, and
the built-in services as seen from tool nodes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aethergraph import (
    NodeContext,
    Service,
    ToolError,
    UnknownServiceError,
    graph_fn,
    register_context_service,
    run,
    start_server,
    stop_server,
    tool,
)
from aethergraph.errors import NoActiveContextError, ServiceRegistrationError
from aethergraph.services.runtime.registry import current_services

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class SlowCounter(Service):
    """Read, yield a few times, write: loses updates unless the section is serialized."""

    def __init__(self, *, guarded: bool = True, yields: int = 3) -> None:
        super().__init__()
        self.value = 0
        self.inside = 0
        self.max_inside = 0
        self.yields = yields
        self._stats_lock = threading.Lock()
        if guarded:
            self.incr = self.critical()(self.incr)  # type: ignore[method-assign]

    async def incr(self) -> int:
        with self._stats_lock:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        try:
            current = self.value
            for _ in range(self.yields):
                await asyncio.sleep(0)
            self.value = current + 1
            return self.value
        finally:
            with self._stats_lock:
                self.inside -= 1


class Lifecycle(Service):
    """Counts start()/close() calls and checks that it is started before use."""

    def __init__(self, label: str = "svc") -> None:
        super().__init__()
        self.label = label
        self.starts = 0
        self.closes = 0
        self.started = False
        self.uses_before_start = 0
        self.uses = 0
        self.start_threads: list[str] = []

    async def start(self) -> None:
        self.starts += 1
        self.started = True
        self.start_threads.append(threading.current_thread().name)

    async def close(self) -> None:
        self.closes += 1
        self.started = False

    async def use(self) -> str:
        self.uses += 1
        if not self.started:
            self.uses_before_start += 1
        return self.label


@graph_fn(name="svc_use_lifecycle", outputs=["label"])
async def svc_use_lifecycle(*, context: NodeContext) -> dict[str, Any]:
    return {"label": await context.lifecycle().use()}


@pytest.fixture
def server() -> Iterator[None]:
    start_server()
    try:
        yield
    finally:
        stop_server()


# ---------------------------------------------------------------------------------------------
# critical(): a real service-wide mutex
# ---------------------------------------------------------------------------------------------


@tool(name="svc_incr_node", outputs=["value"])
async def svc_incr_node(i: int, *, context: NodeContext) -> dict[str, int]:
    return {"value": await context.slow_counter().incr()}


@graph_fn(name="svc_fan_out_incr", outputs=["values"])
async def svc_fan_out_incr(n: int) -> dict[str, Any]:
    handles = [svc_incr_node(i=i) for i in range(n)]
    return {"values": [h["value"] for h in handles]}


def test_critical_serializes_fifty_concurrent_nodes() -> None:
    counter = SlowCounter(guarded=True)
    register_context_service("slow_counter", counter)

    result = run(svc_fan_out_incr, n=50)

    assert counter.value == 50
    assert counter.max_inside == 1
    assert sorted(result["values"]) == list(range(1, 51))
    graph = svc_fan_out_incr.last_graph
    assert len(graph.nodes) == 50
    assert all(node.status == "done" for node in graph.nodes.values())


def test_without_critical_the_same_fan_out_races() -> None:
    """Control for the test above: the workload really interleaves when unguarded."""
    counter = SlowCounter(guarded=False)
    register_context_service("slow_counter", counter)

    run(svc_fan_out_incr, n=50)

    assert counter.max_inside > 1
    assert counter.value < 50


def test_critical_serializes_across_threads_with_their_own_event_loops() -> None:
    counter = SlowCounter(guarded=True)
    per_thread = 40
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    async def hammer() -> None:
        await asyncio.gather(*(counter.incr() for _ in range(per_thread)))

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            asyncio.run(hammer())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)

    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert counter.value == 2 * per_thread
    assert counter.max_inside == 1


def test_critical_serializes_graph_body_and_tool_nodes_together() -> None:
    """The body runs on the caller's loop, tools on the runtime loop: one mutex for both."""
    counter = SlowCounter(guarded=True)
    register_context_service("slow_counter", counter)

    @graph_fn(name="svc_body_and_nodes", outputs=["count"])
    async def body_and_nodes(*, context: NodeContext) -> dict[str, Any]:
        handles = [svc_incr_node(i=i) for i in range(20)]
        from_body = await asyncio.gather(*(context.slow_counter().incr() for _ in range(20)))
        values = [await h["value"] for h in handles]
        return {"count": len(set(values) | set(from_body))}

    assert run(body_and_nodes) == {"count": 40}
    assert counter.value == 40
    assert counter.max_inside == 1


def test_critical_is_reentrant_for_the_holding_task() -> None:
    class Nested(Service):
        def __init__(self) -> None:
            super().__init__()
            self.outer = self.critical()(self.outer)  # type: ignore[method-assign]
            self.inner = self.critical()(self.inner)  # type: ignore[method-assign]

        async def outer(self) -> str:
            return "outer+" + await self.inner()

        async def inner(self) -> str:
            return "inner"

    svc = Nested()

    async def main() -> str:
        return await asyncio.wait_for(svc.outer(), timeout=10)

    assert asyncio.run(main()) == "outer+inner"
    assert svc.mutex.locked is False


def test_critical_releases_the_mutex_when_the_method_raises() -> None:
    class Failing(Service):
        def __init__(self) -> None:
            super().__init__()
            self.boom = self.critical()(self.boom)  # type: ignore[method-assign]

        async def boom(self) -> None:
            raise RuntimeError("boom")

    svc = Failing()

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="boom"):
                await asyncio.wait_for(svc.boom(), timeout=10)

    asyncio.run(main())
    assert svc.mutex.locked is False


def test_critical_on_a_sync_method_raises_type_error() -> None:
    class SyncMethod(Service):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def add(self, n: int) -> int:
            self.total += n
            return self.total

    svc = SyncMethod()

    with pytest.raises(TypeError, match="add"):
        svc.critical()(svc.add)


def test_critical_on_a_sync_method_fails_at_service_construction() -> None:
    class BadCounter(Service):
        def __init__(self) -> None:
            super().__init__()
            self.incr = self.critical()(self.incr)  # type: ignore[method-assign]

        def incr(self) -> int:
            return 1

    with pytest.raises(TypeError, match="async"):
        BadCounter()


# ---------------------------------------------------------------------------------------------
# ctx(): the calling node's context
# ---------------------------------------------------------------------------------------------


class WhoAmI(Service):
    async def node_after_sleeps(self, rounds: int) -> str:
        for _ in range(rounds):
            await asyncio.sleep(0)
        return self.ctx().node_id

    async def node_in_thread(self) -> str:
        return await self.run_blocking(lambda: self.ctx().node_id)

    async def full_context(self) -> NodeContext:
        return self.ctx()


@tool(name="svc_probe", outputs=["seen", "mine"])
async def svc_probe(i: int, *, context: NodeContext) -> dict[str, str]:
    seen = await context.who().node_after_sleeps(1 + i % 4)
    return {"seen": seen, "mine": context.node_id}


@tool(name="svc_probe_sync", outputs=["seen", "mine"])
def svc_probe_sync(i: int, *, context: NodeContext) -> dict[str, str]:
    return {"seen": context.who().ctx().node_id, "mine": context.node_id}


@tool(name="svc_probe_blocking", outputs=["seen", "mine"])
async def svc_probe_blocking(i: int, *, context: NodeContext) -> dict[str, str]:
    return {"seen": await context.who().node_in_thread(), "mine": context.node_id}


def test_ctx_is_the_calling_nodes_context_under_concurrency() -> None:
    register_context_service("who", WhoAmI())

    @graph_fn(name="svc_ctx_concurrent", outputs=["pairs"])
    async def ctx_concurrent() -> dict[str, Any]:
        handles = [svc_probe(i=i) for i in range(20)]
        return {"pairs": [await h for h in handles]}

    result = run(ctx_concurrent)

    node_ids = set(ctx_concurrent.last_graph.nodes)
    assert len(node_ids) == 20
    assert all(pair["seen"] == pair["mine"] for pair in result["pairs"])
    assert {pair["seen"] for pair in result["pairs"]} == node_ids


def test_ctx_in_sync_tools_running_on_worker_threads() -> None:
    register_context_service("who", WhoAmI())

    @graph_fn(name="svc_ctx_sync_tools", outputs=["pairs"])
    async def ctx_sync_tools() -> dict[str, Any]:
        handles = [svc_probe_sync(i=i) for i in range(10)]
        return {"pairs": [await h for h in handles]}

    result = run(ctx_sync_tools)

    assert all(pair["seen"] == pair["mine"] for pair in result["pairs"])
    assert {pair["seen"] for pair in result["pairs"]} == set(ctx_sync_tools.last_graph.nodes)


def test_ctx_inside_run_blocking() -> None:
    register_context_service("who", WhoAmI())

    @graph_fn(name="svc_ctx_blocking", outputs=["pairs", "body"])
    async def ctx_blocking(*, context: NodeContext) -> dict[str, Any]:
        handles = [svc_probe_blocking(i=i) for i in range(8)]
        body = await context.who().node_in_thread()
        return {"pairs": [await h for h in handles], "body": body}

    result = run(ctx_blocking)

    assert result["body"] == "graph"
    assert all(pair["seen"] == pair["mine"] for pair in result["pairs"])
    assert {pair["seen"] for pair in result["pairs"]} == set(ctx_blocking.last_graph.nodes)


def test_ctx_in_the_graph_body_is_the_body_context() -> None:
    register_context_service("who", WhoAmI())

    @graph_fn(name="svc_ctx_body")
    async def ctx_body(*, context: NodeContext) -> dict[str, Any]:
        seen = await context.who().full_context()
        return {"same": seen is context, "node": seen.node_id, "graph": seen.graph_id}

    assert run(ctx_body) == {"same": True, "node": "graph", "graph": "svc_ctx_body"}


def test_ctx_outside_any_node_raises_no_active_context_error() -> None:
    svc = WhoAmI()

    with pytest.raises(NoActiveContextError, match="ctx"):
        svc.ctx()
    with pytest.raises(NoActiveContextError):
        asyncio.run(svc.node_after_sleeps(1))


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------


def test_service_is_started_lazily_once_before_first_use_and_closed_at_stop_server() -> None:
    svc = Lifecycle("lazy")
    register_context_service("lifecycle", svc)
    assert svc.starts == 0

    assert run(svc_use_lifecycle) == {"label": "lazy"}
    assert run(svc_use_lifecycle) == {"label": "lazy"}

    assert svc.starts == 1
    assert svc.uses == 2
    assert svc.uses_before_start == 0
    assert svc.closes == 0
    stop_server()
    assert svc.closes == 1
    assert svc.starts == 1


def test_services_are_started_on_the_runtime_thread() -> None:
    svc = Lifecycle()
    register_context_service("lifecycle", svc)

    run(svc_use_lifecycle)

    assert svc.start_threads == ["aethergraph-runtime"]


def test_a_stopped_service_is_started_again_by_the_next_run() -> None:
    svc = Lifecycle()
    register_context_service("lifecycle", svc)
    run(svc_use_lifecycle)
    stop_server()
    assert (svc.starts, svc.closes) == (1, 1)

    run(svc_use_lifecycle)

    assert (svc.starts, svc.closes) == (2, 1)
    assert svc.uses_before_start == 0


def test_start_server_starts_already_registered_services() -> None:
    svc = Lifecycle()
    register_context_service("lifecycle", svc)
    assert svc.starts == 0

    start_server()
    try:
        assert svc.starts == 1
        start_server()  # idempotent
        assert svc.starts == 1
        assert run(svc_use_lifecycle) == {"label": "svc"}
        assert svc.starts == 1
        assert svc.closes == 0
    finally:
        stop_server()
    assert svc.closes == 1


def test_service_registered_after_start_server_is_started_immediately(server: None) -> None:
    svc = Lifecycle()

    register_context_service("lifecycle", svc)

    assert svc.starts == 1
    assert svc.started is True
    assert run(svc_use_lifecycle) == {"label": "svc"}
    assert svc.starts == 1
    assert svc.uses_before_start == 0


def test_re_registering_a_started_service_closes_the_old_one() -> None:
    old = Lifecycle("old")
    register_context_service("lifecycle", old)
    assert run(svc_use_lifecycle) == {"label": "old"}
    assert (old.starts, old.closes) == (1, 0)

    new = Lifecycle("new")
    register_context_service("lifecycle", new)

    assert old.closes == 1
    assert run(svc_use_lifecycle) == {"label": "new"}
    assert (new.starts, new.closes) == (1, 0)
    assert old.uses == 1
    stop_server()
    assert new.closes == 1
    assert old.closes == 1  # not closed twice


def test_re_registering_while_serving_closes_old_and_starts_new(server: None) -> None:
    old = Lifecycle("old")
    register_context_service("lifecycle", old)
    new = Lifecycle("new")

    register_context_service("lifecycle", new)

    assert (old.starts, old.closes) == (1, 1)
    assert (new.starts, new.closes) == (1, 0)


def test_re_registering_the_same_instance_does_not_close_it() -> None:
    svc = Lifecycle()
    register_context_service("lifecycle", svc)
    run(svc_use_lifecycle)

    register_context_service("lifecycle", svc)

    assert (svc.starts, svc.closes) == (1, 0)
    assert run(svc_use_lifecycle) == {"label": "svc"}


def test_service_without_lifecycle_hooks_is_fine() -> None:
    class Plain:
        def __init__(self) -> None:
            self.calls = 0

        async def ping(self) -> str:
            self.calls += 1
            return "pong"

    plain = Plain()
    register_context_service("plain_svc", plain)

    @graph_fn(name="svc_plain_object", outputs=["reply"])
    async def plain_object(*, context: NodeContext) -> dict[str, str]:
        return {"reply": await context.plain_svc().ping()}

    start_server()
    try:
        assert run(plain_object) == {"reply": "pong"}
    finally:
        stop_server()
    assert plain.calls == 1


# ---------------------------------------------------------------------------------------------
# registration and lookup errors
# ---------------------------------------------------------------------------------------------


def test_unknown_service_from_graph_body() -> None:
    @graph_fn(name="svc_unknown_body")
    async def unknown_body(*, context: NodeContext) -> dict[str, Any]:
        return {"x": await context.no_such_service_xyz().anything()}

    with pytest.raises(UnknownServiceError) as info:
        run(unknown_body)

    assert isinstance(info.value, AttributeError)
    message = str(info.value)
    assert "no_such_service_xyz" in message
    assert "register_context_service" in message


def test_unknown_service_from_a_tool_fails_the_node() -> None:
    @tool(name="svc_unknown_tool", outputs=["x"])
    async def unknown_tool(*, context: NodeContext) -> dict[str, Any]:
        return {"x": context.missing_from_tool_svc()}

    @graph_fn(name="svc_unknown_in_tool", outputs=["x"])
    async def unknown_in_tool() -> Any:
        return unknown_tool()

    with pytest.raises(ToolError) as info:
        run(unknown_in_tool)

    assert "UnknownServiceError" in info.value.exc_type
    assert "missing_from_tool_svc" in info.value.message
    assert "register_context_service" in info.value.message
    assert info.value.node_id == "svc_unknown_tool_0"


def test_unknown_service_is_an_attribute_error_for_hasattr() -> None:
    ctx = NodeContext(run_id="r", graph_id="g", node_id="n")

    assert not hasattr(ctx, "never_registered_svc")
    with pytest.raises(AttributeError, match="never_registered_svc"):
        ctx.never_registered_svc()


@pytest.mark.parametrize("name", ["memory", "channel", "logger", "artifacts", "kv"])
def test_registering_under_a_builtin_name_is_rejected(name: str) -> None:
    with pytest.raises(ServiceRegistrationError, match=name) as info:
        register_context_service(name, Lifecycle())

    assert isinstance(info.value, ValueError)
    assert name not in current_services().names()


@pytest.mark.parametrize("name", ["services", "run_id", "graph_id", "node_id", "attempt"])
def test_registering_under_a_node_context_attribute_is_rejected(name: str) -> None:
    """Such a service could never be reached as context.<name>(): the attribute shadows it."""
    with pytest.raises(ServiceRegistrationError, match=name):
        register_context_service(name, Lifecycle())

    assert name not in current_services().names()


def test_builtins_still_work_after_a_rejected_registration() -> None:
    with pytest.raises(ServiceRegistrationError):
        register_context_service("memory", Lifecycle())

    @graph_fn(name="svc_builtin_intact", outputs=["kind"])
    async def builtin_intact(*, context: NodeContext) -> dict[str, str]:
        event = await context.memory().record("check", {"ok": True})
        return {"kind": event.kind}

    assert run(builtin_intact) == {"kind": "check"}


def test_registering_a_class_instead_of_an_instance_is_rejected() -> None:
    with pytest.raises(ServiceRegistrationError, match="instance"):
        register_context_service("lifecycle", Lifecycle)

    assert "lifecycle" not in current_services().names()


@pytest.mark.parametrize("name", ["my-service", "1st", "", "two words", "a.b"])
def test_registering_under_a_non_identifier_name_is_rejected(name: str) -> None:
    with pytest.raises(ServiceRegistrationError):
        register_context_service(name, Lifecycle())

    assert name not in current_services().names()


def test_non_callable_service_called_with_arguments_raises_type_error() -> None:
    register_context_service("lifecycle", Lifecycle())

    @graph_fn(name="svc_call_non_callable")
    async def call_non_callable(*, context: NodeContext) -> dict[str, Any]:
        return {"x": context.lifecycle("argument")}

    with pytest.raises(TypeError, match="lifecycle"):
        run(call_non_callable)


# ---------------------------------------------------------------------------------------------
# built-in services from tool nodes
# ---------------------------------------------------------------------------------------------


@tool(name="svc_mem_write", outputs=["seq"])
async def svc_mem_write(tag: str, *, context: NodeContext) -> dict[str, int]:
    event = await context.memory().record("note", {"tag": tag})
    return {"seq": event.seq}


@tool(name="svc_mem_read", outputs=["notes", "writers"])
async def svc_mem_read(after: list[int], *, context: NodeContext) -> dict[str, Any]:
    events = await context.memory().recent(10, kind="note")
    return {"notes": [e.data["tag"] for e in events], "writers": [e.node_id for e in events]}


@graph_fn(name="svc_memory_graph", outputs=["notes", "writers"])
async def svc_memory_graph(tags: list[str]) -> Any:
    writes = [svc_mem_write(tag=t) for t in tags]
    return svc_mem_read(after=[w["seq"] for w in writes])


def test_memory_is_shared_by_the_nodes_of_one_run() -> None:
    result = run(svc_memory_graph, tags=["a", "b", "c"])

    assert sorted(result["notes"]) == ["a", "b", "c"]
    writer_ids = {
        n for n, node in svc_memory_graph.last_graph.nodes.items() if node.tool == "svc_mem_write"
    }
    assert set(result["writers"]) == writer_ids


def test_memory_is_isolated_between_runs() -> None:
    first = run(svc_memory_graph, tags=["first-1", "first-2"])
    first_run = svc_memory_graph.last_graph.run_id
    second = run(svc_memory_graph, tags=["second"])
    second_run = svc_memory_graph.last_graph.run_id

    assert first_run != second_run
    assert sorted(first["notes"]) == ["first-1", "first-2"]
    assert second["notes"] == ["second"]
    snapshot = svc_memory_graph.last_memory_snapshot
    assert [e.data for e in snapshot] == [{"tag": "second"}]
    assert {e.run_id for e in snapshot} == {second_run}


def test_kv_set_in_one_node_get_in_another() -> None:
    @tool(name="svc_kv_set", outputs=["key"])
    async def kv_set(key: str, value: Any, *, context: NodeContext) -> dict[str, str]:
        await context.kv().set(key, value)
        return {"key": key}

    @tool(name="svc_kv_get", outputs=["value", "missing"])
    async def kv_get(key: str, *, context: NodeContext) -> dict[str, Any]:
        return {
            "value": await context.kv().get(key),
            "missing": await context.kv().get(key + ":absent", "fallback"),
        }

    @graph_fn(name="svc_kv_graph", outputs=["value", "missing"])
    async def kv_graph() -> Any:
        written = kv_set(key="svc:test:kv", value={"n": [1, 2]})
        return kv_get(key=written["key"])

    assert run(kv_graph) == {"value": {"n": [1, 2]}, "missing": "fallback"}


def test_artifacts_save_text_in_one_node_load_text_in_another() -> None:
    @tool(name="svc_art_save", outputs=["uri"])
    async def art_save(text: str, *, context: NodeContext) -> dict[str, str]:
        return {"uri": await context.artifacts().save_text(text)}

    @tool(name="svc_art_load", outputs=["text"])
    async def art_load(uri: str, *, context: NodeContext) -> dict[str, str]:
        return {"text": await context.artifacts().load_text(uri)}

    @graph_fn(name="svc_artifacts_graph", outputs=["uri", "text"])
    async def artifacts_graph(text: str) -> dict[str, Any]:
        saved = art_save(text=text)
        return {"uri": saved["uri"], "text": art_load(uri=saved["uri"])["text"]}

    result = run(artifacts_graph, text="héllo artifacts")

    assert result["text"] == "héllo artifacts"
    assert result["uri"].startswith("artifact://sha256/")


def test_logger_records_from_tools_carry_node_ids(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aethergraph.node")

    @tool(name="svc_log_tool", outputs=["node"])
    async def log_tool(i: int, *, context: NodeContext) -> dict[str, str]:
        context.logger().info("svc-log-marker %d", i, extra={"i": i})
        return {"node": context.node_id}

    @tool(name="svc_log_sync_tool", outputs=["node"])
    def log_sync_tool(*, context: NodeContext) -> dict[str, str]:
        context.logger().warning("svc-log-sync-marker")
        return {"node": context.node_id}

    @graph_fn(name="svc_logging_graph", outputs=["nodes"])
    async def logging_graph() -> dict[str, Any]:
        handles = [log_tool(i=i) for i in range(3)] + [log_sync_tool()]
        return {"nodes": [await h["node"] for h in handles]}

    result = run(logging_graph)

    run_id = logging_graph.last_graph.run_id
    records = [r for r in caplog.records if r.getMessage().startswith("svc-log-")]
    assert len(records) == 4
    assert all(r.name == "aethergraph.node" for r in records)
    assert all(r.run_id == run_id and r.graph_id == "svc_logging_graph" for r in records)
    by_message = {r.getMessage(): r for r in records}
    for i in range(3):
        record = by_message[f"svc-log-marker {i}"]
        assert record.i == i
        assert record.node_id == result["nodes"][i]
    assert by_message["svc-log-sync-marker"].node_id == result["nodes"][3]
    assert by_message["svc-log-sync-marker"].levelno == logging.WARNING
    assert len(set(result["nodes"])) == 4
