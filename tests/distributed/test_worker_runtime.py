"""The worker runtime (``aethergraph.execution.worker``) against real worker processes.

Messages are published here the way the client does (``wire.task_envelope`` onto the tool's
queue) and the outcome documents are read straight off a private result list, so what the
worker sends is checked as sent: times, failure wire form, retryability, origin.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery_tools import d_interval, d_unencodable
from polling import wait_until
from tool_paths import HERE, TOOLS

from aethergraph import ToolError, graph_fn
from aethergraph.cluster import LocalCluster
from aethergraph.execution.wire import META, task_envelope
from aethergraph.execution.worker.services import WorkerServices
from aethergraph.keys import Keys
from aethergraph.services.node_logger import LOGGER_NAME, node_logger
from aethergraph.services.runtime.registry import ServiceRegistry
from aethergraph.settings import Settings

REPO = Path(__file__).resolve().parents[2]


# -- helpers -----------------------------------------------------------------------------------


class RawClient:
    """Publishes task messages like the client does and pops their outcome documents."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.keys = cluster.keys
        self.redis = redis.Redis.from_url(cluster.url, socket_timeout=None)  # blocking pops
        self.client_id = f"rawtest-{uuid.uuid4().hex[:8]}"
        # a live client, as workers require of the nodes they start (expires by itself)
        self.redis.set(self.keys.client_lease(self.client_id), "1", ex=600)

    def meta(self, node_id: str) -> dict[str, Any]:
        return {"run_id": f"raw-{uuid.uuid4().hex[:8]}", "graph_id": "g", "node_id": node_id,
                "attempt": 1, "timeout": None}  # fmt: skip

    def send(self, tool: str, kwargs: dict[str, Any], meta: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex
        queue = self.keys.tool_queue(None)
        envelope = task_envelope(
            task_id=task_id,
            task_name=tool,
            kwargs={**kwargs, META: {"client": self.client_id, **meta}},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr="{}",
            delivery_tag=task_id,  # as the executor sets it
        )
        self.redis.lpush(queue, envelope)
        return task_id

    def outcomes(self, n: int) -> list[dict[str, Any]]:
        key = self.keys.client_results(self.client_id)
        found = []
        for _ in range(n):
            popped = self.redis.blpop([key], timeout=30)
            assert popped is not None, f"no outcome within 30 s (got {found})"
            found.append(json.loads(popped[1]))
        return found

    def close(self) -> None:
        self.redis.delete(self.keys.client_results(self.client_id))
        self.redis.close()


@pytest.fixture
def raw(cluster: LocalCluster) -> Iterator[RawClient]:
    client = RawClient(cluster)
    yield client
    client.close()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def single_worker(redis_url: str, *worker_args: str) -> LocalCluster:
    return LocalCluster(
        workers=1,
        tools=[TOOLS],
        concurrency=1,
        redis_url=redis_url,
        worker_args=worker_args,
        env={"PYTHONPATH": str(HERE)},
    )


# -- outcomes ----------------------------------------------------------------------------------


def test_outcomes_carry_worker_times_and_the_full_failure(raw: RawClient) -> None:
    before = time.time()
    ok = raw.send("d_inc", {"x": 1}, raw.meta("ok"))
    bad = raw.send("d_inc", {"x": {"__ag__": "no-such-tag"}}, raw.meta("bad"))
    unknown = raw.send("d_not_served_anywhere", {}, raw.meta("unknown"))
    by_id = {o["task_id"]: o for o in raw.outcomes(3)}
    after = time.time()
    for outcome in by_id.values():
        assert before <= outcome["started_at"] <= outcome["finished_at"] <= after, outcome
    assert by_id[ok]["ok"]
    assert by_id[ok]["outputs"] == {"y": 2}
    assert by_id[ok]["failure"] is None
    decode = by_id[bad]["failure"]
    assert decode["exc_type"].endswith("CodecError")
    assert "no-such-tag" in decode["message"]
    assert decode["retryable"] is False  # the same message fails the same way every time
    missing = by_id[unknown]["failure"]
    assert missing["exc_type"] == "aethergraph.errors.WorkerUnavailableError"
    assert "does not serve tool 'd_not_served_anywhere'" in missing["message"]
    assert "--tools" in missing["message"]
    assert missing["retryable"] is False


def test_celery_builtin_tasks_are_not_served(raw: RawClient) -> None:
    """Celery registers ``celery.*`` tasks in every app; a worker runs tools and nothing else.

    A forged message naming one of them is rejected like any task the worker does not serve
    (its nodes fail, not retryable) instead of being run — and retried — by Celery.
    """
    forged = {
        raw.send(name, {}, raw.meta(name))
        for name in ("celery.chord_unlock", "celery.backend_cleanup", "celery.map")
    }
    ok = raw.send("d_inc", {"x": 1}, raw.meta("after"))  # the worker keeps serving
    by_id = {o["task_id"]: o for o in raw.outcomes(4)}
    assert set(by_id) == forged | {ok}
    assert by_id[ok]["outputs"] == {"y": 2}
    for task_id in forged:
        failure = by_id[task_id]["failure"]
        assert failure["exc_type"] == "aethergraph.errors.WorkerUnavailableError"
        assert "does not serve tool 'celery." in failure["message"]
        assert failure["retryable"] is False


def test_a_message_naming_a_client_without_a_lease_writes_nothing(
    cluster: LocalCluster, raw: RawClient
) -> None:
    """A forged message cannot make a worker write to a result list of its choosing (it once
    could, 13.7 MB at a time): a node runs only for a client whose lease is alive."""
    made_up = f"forged-{uuid.uuid4().hex[:8]}"
    key = raw.keys.client_results(made_up)
    meta = {**raw.meta("forged"), "client": made_up, "sent": 0, "lease": 30}  # old: no wait
    task_id = uuid.uuid4().hex
    envelope = task_envelope(
        task_id=task_id,
        task_name="d_big",
        kwargs={"n": 4_000_000, META: meta},
        queue=raw.keys.tool_queue(None),
        time_limit=None,
        soft_time_limit=None,
        kwargs_repr="{}",
        delivery_tag=task_id,
    )
    raw.redis.lpush(raw.keys.tool_queue(None), envelope)
    ok = raw.send("d_inc", {"x": 1}, raw.meta("after"))  # taken after the forged one
    (outcome,) = raw.outcomes(1)
    assert outcome["task_id"] == ok
    queue = raw.keys.tool_queue(None)
    wait_until(
        lambda: (
            not raw.redis.llen(queue) and not raw.redis.hexists(raw.keys.celery_unacked(), task_id)
        ),
        "the forged message to be taken and dropped",
    )
    assert not raw.redis.exists(key)


def test_bad_messages_are_dead_lettered_and_the_workers_keep_serving(
    cluster: LocalCluster, raw: RawClient
) -> None:
    """Items kombu or Celery cannot take apart used to stop the worker that popped them."""
    queue = raw.keys.tool_queue(None)
    good = json.loads(
        task_envelope(
            task_id="template",
            task_name="d_inc",
            kwargs={"x": 1, META: {"client": raw.client_id, **raw.meta("bad")}},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr="{}",
        )
    )
    not_base64 = {**good, "body": "!!!not base64!!!"}
    not_a_triple = {**good, "body": base64.b64encode(b'{"a": 1}').decode()}
    not_a_triple["properties"] = {**good["properties"], "delivery_tag": "bad-triple-tag"}
    dead_key = raw.keys.dead_letters()
    raw.redis.delete(dead_key)
    try:
        for item in (b"this is not json", json.dumps(not_base64), json.dumps(not_a_triple)):
            raw.redis.lpush(queue, item)
        ok = raw.send("d_inc", {"x": 41}, raw.meta("after"))
        (outcome,) = raw.outcomes(1)
        assert outcome["task_id"] == ok
        assert outcome["outputs"] == {"y": 42}
        letters = wait_until(
            lambda: (found := raw.redis.lrange(dead_key, 0, -1)) and len(found) == 3 and found,
            "three dead letters",
        )
        reasons = sorted(json.loads(letter)["reason"] for letter in letters)
        assert reasons[0].startswith("Error: Invalid base64")  # binascii.Error
        assert reasons[1].startswith("ValueError: not enough values to unpack")
        assert reasons[2].startswith("not JSON")
        assert raw.redis.ttl(dead_key) > 0
        assert not raw.redis.hexists(raw.keys.celery_unacked(), "bad-triple-tag")
        assert all(proc.poll() is None for proc in cluster.workers)
    finally:
        raw.redis.delete(dead_key)


class _Evil:
    """Runs a shell command when unpickled: what a pickle message could do to a worker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_untrusted_messages_are_refused_and_nothing_they_name_runs(
    cluster: LocalCluster, raw: RawClient, tmp_path: Path
) -> None:
    """A pickle message, a codec tag naming a module to import and wrong arguments: each is
    refused with its reason, nothing is imported or run, and the workers keep serving."""
    queue = raw.keys.tool_queue(None)
    marker = tmp_path / "pickle-ran"
    good = json.loads(
        task_envelope(
            task_id=uuid.uuid4().hex,
            task_name="d_inc",
            kwargs={"x": 1, META: {"client": raw.client_id, **raw.meta("pickled")}},
            queue=queue,
            time_limit=None,
            soft_time_limit=None,
            kwargs_repr="{}",
        )
    )
    pickled = {
        **good,
        "content-type": "application/x-python-serialize",
        "content-encoding": "binary",
        "body": base64.b64encode(pickle.dumps(((), {"x": _Evil(marker)}, {}))).decode(),
    }
    raw.redis.lpush(queue, json.dumps(pickled))
    bomb = {"__ag__": "pydantic", "cls": "ag_never_imported_module:Model", "data": {}}
    imported = raw.send("d_echo", {"value": bomb}, raw.meta("import"))
    extra = raw.send("d_inc", {"x": 1, "evil": 2}, raw.meta("extra"))
    wrong = raw.send("d_inc", {"x": "abc"}, raw.meta("wrong"))
    ok = raw.send("d_inc", {"x": 41}, raw.meta("after"))
    by_id = {o["task_id"]: o for o in raw.outcomes(4)}
    assert by_id[ok]["outputs"] == {"y": 42}
    failure = by_id[imported]["failure"]
    assert failure["exc_type"] == "aethergraph.errors.CodecError"
    assert "'ag_never_imported_module' is not imported in this process" in failure["message"]
    assert failure["retryable"] is False
    assert "unexpected keyword argument 'evil'" in by_id[extra]["failure"]["message"]
    assert by_id[wrong]["failure"]["exc_type"] == "TypeError"

    def refused() -> bool:
        needle = "Refusing to deserialize untrusted content"
        return any(needle in cluster.worker_log(i) for i in range(len(cluster.workers)))

    wait_until(refused, "the pickle message's refusal in a worker log")
    assert not marker.exists(), "a pickle message ran code on a worker"
    assert all(proc.poll() is None for proc in cluster.workers)


def test_pack_outcomes_carry_times_and_failures_per_node(raw: RawClient) -> None:
    nodes = [
        {"id": "p.0", **raw.meta("p0"), "args": {"x": 1}},
        {"id": "p.1", **raw.meta("p1"), "args": {"x": {"__ag__": "no-such-tag"}}},
        {"id": "p.2", **raw.meta("p2"), "args": {"x": 3}},
    ]
    raw.send("d_ainc", {}, {"pack": nodes})
    by_id = {o["task_id"]: o for o in raw.outcomes(3)}
    assert by_id["p.0"]["outputs"] == {"y": 2}
    assert by_id["p.2"]["outputs"] == {"y": 4}
    assert by_id["p.1"]["failure"]["retryable"] is False
    for outcome in by_id.values():
        assert outcome["started_at"] <= outcome["finished_at"]


def test_origin_names_the_pool_process_that_ran_the_node(
    cluster: LocalCluster, raw: RawClient
) -> None:
    raw.send("d_pid", {}, raw.meta("pid"))
    (outcome,) = raw.outcomes(1)
    pid = outcome["outputs"]["pid"]
    assert pid not in {w.pid for w in cluster.workers}  # a prefork child, not the main process
    assert outcome["worker"] == f"{pid}@{socket.gethostname()}"


def test_a_failure_the_worker_marks_not_retryable_is_not_retried(cluster: LocalCluster) -> None:
    key = f"{cluster.namespace}:test:unencodable:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(cluster.url)

    @graph_fn(name="unencodable_once")
    async def unencodable() -> Any:
        return {"y": d_unencodable(key=key)["y"]}

    try:
        with pytest.raises(ToolError, match="cannot encode"):
            cluster.run(unencodable)
        assert int(client.get(key) or 0) == 1  # retries=3, yet the tool ran once
        (node,) = list(unencodable.last_graph)
        assert node.attempts == 1
    finally:
        client.delete(key)
        client.close()


# -- services ----------------------------------------------------------------------------------


def test_rebuilt_services_forward_each_log_record_once(
    redis_url: str, redis_namespace: str
) -> None:
    keys = Keys(redis_namespace)
    settings = Settings(broker_url=redis_url, namespace=redis_namespace)
    services = WorkerServices(settings, keys, registry=ServiceRegistry())
    run_id = f"logs-{uuid.uuid4().hex[:8]}"
    listener = redis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.run_channel(run_id))
    assert pubsub.get_message(timeout=5) is None  # consumes the subscribe confirmation
    node_log = logging.getLogger(LOGGER_NAME)
    level = node_log.level
    try:
        services.build()
        services.close()
        services.build()  # a rebuild must not add a second forwarding handler
        node_logger(run_id, "g", "n").info("forwarded %s", "once")
        services.close()  # waits for the publishes in flight
        listener.publish(keys.run_channel(run_id), "sentinel")  # after them, in order
        lines = []
        while (message := pubsub.get_message(timeout=10)) is not None:
            if message["data"] == b"sentinel":
                break
            lines.append(json.loads(message["data"])["payload"]["msg"])
        else:
            pytest.fail(f"the sentinel never arrived (got {lines})")
        assert lines == ["forwarded once"]
    finally:
        services.close()
        node_log.setLevel(level)
        pubsub.close()
        listener.close()


# -- concurrency -------------------------------------------------------------------------------


def _spans(cluster: LocalCluster, n: int) -> list[tuple[float, float]]:
    @graph_fn(name="async_spans", outputs=["spans"])
    async def spans(n: int) -> Any:
        handles = [d_interval() for _ in range(n)]
        return {"spans": [[h["start"], h["end"]] for h in handles]}

    out = cluster.run(spans, n=n)
    return [(float(s), float(e)) for s, e in out["spans"]]


def test_a_worker_runs_no_more_async_nodes_at_once_than_its_slots(redis_url: str) -> None:
    with single_worker(redis_url) as c1:  # -c 1
        spans = _spans(c1, 16)
    assert len(spans) == 16
    assert max_overlap(spans) == 1


def test_async_concurrency_is_an_explicit_opt_in(redis_url: str) -> None:
    with single_worker(redis_url, "--async-concurrency", "4") as c1:
        spans = _spans(c1, 16)
    assert 2 <= max_overlap(spans) <= 4


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_indexes_live_workers_and_a_clean_stop_removes_them(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with single_worker(redis_url) as c1:
            index = c1.keys.workers_index()
            members = client.zrange(index, 0, -1, withscores=True)
            assert len(members) == 1
            worker_id, beat = members[0]
            info = client.hgetall(c1.keys.worker(worker_id))
            assert int(info["pid"]) == c1.workers[0].pid
            assert abs(float(info["ts"]) - beat) < 1e-3
        assert client.zcard(index) == 0  # removed at the clean shutdown, not after the TTL
        assert not client.exists(c1.keys.worker(worker_id))
    finally:
        client.close()


def test_the_heartbeat_lists_the_messages_the_worker_holds(
    cluster: LocalCluster, raw: RawClient
) -> None:
    """A running message's id is in its worker's ``held`` field, and leaves it once done."""
    started, release = f"started-{uuid.uuid4().hex}", f"release-{uuid.uuid4().hex}"
    task_id = raw.send("d_block", {"key": started, "release": release}, raw.meta("held"))
    try:
        assert raw.redis.blpop([started], timeout=30) is not None

        def holders() -> list[str]:
            found = []
            for worker_id in raw.redis.zrange(raw.keys.workers_index(), 0, -1):
                fields = raw.redis.hgetall(raw.keys.worker(worker_id.decode()))
                if task_id in json.loads(fields.get(b"held", b"[]")):
                    found.append(worker_id.decode())
            return found

        assert len(wait_until(holders, "a worker listing the running message")) == 1
        # kombu holds it in the namespace's own unacked keys, not in the DB-wide "unacked"
        assert raw.redis.hexists(raw.keys.celery_unacked(), task_id)
        assert not raw.redis.hexists("unacked", task_id)
        index = raw.keys.celery_unacked_index()
        first = raw.redis.zscore(index, task_id)
        assert first is not None
        # re-scored by the next heartbeat: the score is the holder's last sign of life
        wait_until(lambda: (raw.redis.zscore(index, task_id) or 0) > first, "a fresh score")
    finally:
        raw.redis.rpush(release, 1)
    (outcome,) = raw.outcomes(1)
    assert outcome["task_id"] == task_id
    wait_until(lambda: not holders(), "the message leaving the worker's held list")
    raw.redis.delete(started, release)


# -- the one-file script -----------------------------------------------------------------------


SCRIPT = textwrap.dedent(
    """
    from typing import Any

    from aethergraph import graph_fn, run, tool
    from aethergraph.cluster import LocalCluster


    @tool(outputs=["total"])
    def sum_vec(xs: list[int]) -> dict[str, Any]:
        return {"total": sum(xs)}


    @graph_fn(name="pipeline", outputs=["total"])
    async def pipeline(n: int) -> Any:
        return {"total": sum_vec(xs=list(range(n)))["total"]}


    print(run(pipeline, n=4), flush=True)

    if __name__ == "__main__":
        with LocalCluster(workers=2) as c:
            print(c.run(pipeline, n=5), flush=True)
    """
)


def test_the_natural_one_file_script_runs_locally_and_on_its_cluster(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    unset = {"AETHERGRAPH_BROKER_URL", "AETHERGRAPH_EXECUTOR", "AETHERGRAPH_NAMESPACE"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["AETHERGRAPH_WORKER_WAIT"] = "5"  # a regression fails in seconds, not 30
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["{'total': 6}", "{'total': 10}"]
