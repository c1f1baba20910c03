"""Tools defined in a notebook (``__main__``) on a LocalCluster's workers: the code shipping
format, and real clients whose tools live only in ``__main__``.

The clients are ``python -`` processes reading their program from stdin: like a notebook
kernel, their ``__main__`` has no file a worker could import. (The notebook itself, in a real
Jupyter kernel, is ``test_notebook.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from aethergraph import tool
from aethergraph.errors import ConfigurationError, ToolCodeError
from aethergraph.execution.shipping import CodeShipper, digest_of, pack_tool, unpack_tool


def _client(program: str, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``program`` as a ``python -`` client; its last stdout line is its JSON report."""
    import os

    proc = subprocess.run(
        [sys.executable, "-"],
        input=textwrap.dedent(program),
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the format ---------------------------------------------------------------------------
def test_a_packed_tool_loads_as_the_same_tool_and_checks_its_digest() -> None:
    @tool(outputs=["y"], retries=2, queue="gpu")
    def ship_double(x: int) -> dict[str, Any]:
        return {"y": 2 * x}

    blob = pack_tool(ship_double.spec)
    spec = unpack_tool(blob, digest_of(blob))
    assert (spec.name, spec.outputs, spec.policy.retries, spec.policy.queue) == (
        "ship_double",
        ("y",),
        2,
        "gpu",
    )
    assert spec.fn(x=4) == {"y": 8}
    assert spec.source_digest == ship_double.spec.source_digest
    with pytest.raises(ToolCodeError, match="does not match its digest"):
        unpack_tool(blob + b"x", digest_of(blob))


def test_a_tool_that_cannot_be_pickled_is_an_error_naming_it_and_the_fix() -> None:
    lock = threading.Lock()

    @tool
    def ship_locked(x: int) -> int:
        with lock:
            return x

    with pytest.raises(ToolCodeError, match=r"ship_locked.*cannot be sent.*--tools"):
        pack_tool(ship_locked.spec)


def test_the_shipper_writes_each_code_once_and_again_after_a_failed_publish() -> None:
    @tool
    def ship_once(x: int) -> int:
        return x

    shipper = CodeShipper()
    digest = shipper.digest(ship_once.spec)
    assert [d for d, _ in shipper.uploads({digest})] == [digest]
    assert shipper.uploads({digest}) == []
    shipper.forget_written([digest])
    assert [d for d, _ in shipper.uploads({digest})] == [digest]
    shipper.new_run()
    assert shipper.digest(ship_once.spec) == digest  # same code, same bytes


def test_a_cluster_on_a_shared_broker_ships_nothing_unless_asked(redis_url: str) -> None:
    from aethergraph.cluster import LocalCluster

    assert LocalCluster(workers=0, redis_url=redis_url).ship_code is False
    assert LocalCluster(workers=0, redis_url=redis_url, ship_code=True).ship_code is True
    assert LocalCluster(workers=0).ship_code is True
    with pytest.raises(ConfigurationError, match="ship_code must be"):
        LocalCluster(workers=0, ship_code="yes")  # type: ignore[arg-type]


# -- real clients ---------------------------------------------------------------------------
NOTEBOOK_CLIENT = """
    import json, os
    from aethergraph import graph_fn, tool
    from aethergraph.cluster import LocalCluster

    OFFSET = 100

    def helper(x):
        return x + OFFSET

    @tool(outputs=["y", "pid"])
    def cell_square(x: int):
        return {"y": helper(x * x), "pid": os.getpid()}

    @graph_fn(name="cell_sum", outputs=["total", "pids"])
    async def cell_sum(n: int):
        handles = [cell_square(x=i) for i in range(n)]
        return {"total": sum([await h["y"] for h in handles]),
                "pids": sorted({await h["pid"] for h in handles})}

    @tool(cache=True)
    def cell_cached(x: int):
        with open(os.environ["CACHE_LOG"], "a") as log:
            log.write(f"{x}\\n")
        return x * 10

    @graph_fn(name="cell_cached_graph", outputs=["total"])
    async def cell_cached_graph(n: int):
        handles = [cell_cached(x=i) for i in range(n)]
        return {"total": sum([(await h)["result"] for h in handles])}

    report = {"client": os.getpid()}
    with LocalCluster(workers=1) as cluster:
        report["cached"] = [cluster.run(cell_cached_graph, n=n)["total"] for n in (3, 4)]
        report["reused"] = [node.reused for node in cell_cached_graph.last_graph]
        report["first"] = cluster.run(cell_sum, n=4)

        @tool(outputs=["y", "pid"])          # the cell, edited and run again
        def cell_square(x: int):
            return {"y": -helper(x), "pid": os.getpid()}

        report["edited"] = cluster.run(cell_sum, n=4)
        OFFSET = 0                             # a helper's global, edited
        report["helper_edited"] = cluster.run(cell_sum, n=4)
    print(json.dumps(report))
"""


def test_tools_defined_in_main_run_on_the_workers_and_edits_take_effect(tmp_path: Path) -> None:
    cache_log = tmp_path / "cache.log"
    report = _client(NOTEBOOK_CLIENT, env={"CACHE_LOG": str(cache_log)})
    # @tool(cache=True) on the workers: the second run ran only its new call
    assert report["cached"] == [30, 60]
    assert sorted(cache_log.read_text().split()) == ["0", "1", "2", "3"]
    assert report["reused"] == ["cached", "cached", "cached", None]
    first = report["first"]
    assert first["total"] == sum(i * i + 100 for i in range(4))
    assert first["pids"]
    assert report["client"] not in first["pids"]
    assert report["edited"]["total"] == -sum(i + 100 for i in range(4))
    assert report["helper_edited"]["total"] == -sum(range(4))


def test_a_client_that_does_not_ship_says_the_tool_is_in_the_notebook(tmp_path: Path) -> None:
    """A worker pool without --accept-code, and a client that ships nothing: the node fails
    after the worker wait with an error that names the notebook and the ways out."""
    report = _client(
        """
        import json
        from aethergraph import graph_fn, run, tool
        from aethergraph.cluster import LocalCluster

        @tool
        def cell_only(x: int):
            return x

        @graph_fn(name="cell_only_graph")
        async def cell_only_graph():
            return {"v": cell_only(x=1)}

        report = {}
        with LocalCluster(workers=0) as own:   # a Redis to play the shared broker
            try:
                LocalCluster(workers=1, redis_url=own.url)
            except Exception as exc:
                report["no_tools"] = f"{type(exc).__name__}: {exc}"
            shared = LocalCluster(workers=0, redis_url=own.url)
            try:
                run(cell_only_graph, executor=shared)
            except Exception as exc:
                report["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                shared.close()
        print(json.dumps(report))
        """,
        env={"AETHERGRAPH_WORKER_WAIT": "0.5"},
    )
    assert report["no_tools"].startswith("ConfigurationError")
    assert "ship_code=True" in report["no_tools"]
    error = report["error"]
    assert "defined in the notebook (__main__)" in error
    assert "does not ship code" in error
    assert "--tools" in error


MODULE_V1 = """
from aethergraph import tool

@tool(outputs=["v"])
def edited_tool(x: int):
    return {"v": x + 1}
"""


def test_a_worker_with_an_older_module_fails_clearly_until_restarted(tmp_path: Path) -> None:
    """A tools module edited after the workers imported it: ToolCodeError naming restart(),
    then ``cluster.restart()`` loads the new source."""
    module = tmp_path / "edited_tools.py"
    module.write_text(MODULE_V1)
    report = _client(
        f"""
        import importlib, json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from aethergraph import graph_fn
        from aethergraph.cluster import LocalCluster
        import edited_tools

        @graph_fn(name="edited_graph", outputs=["v"])
        async def edited_graph():
            return {{"v": edited_tools.edited_tool(x=1)["v"]}}

        report = {{}}
        with LocalCluster(workers=1, tools=[{str(module)!r}]) as cluster:
            report["before"] = cluster.run(edited_graph)
            with open({str(module)!r}, "w") as f:
                f.write({MODULE_V1.replace("x + 1", "x + 1000")!r})
            importlib.reload(edited_tools)
            try:
                cluster.run(edited_graph)
            except Exception as exc:
                report["stale"] = f"{{type(exc).__name__}}: {{exc}}"
            cluster.restart()
            report["after"] = cluster.run(edited_graph)
        print(json.dumps(report))
        """
    )
    assert report["before"] == {"v": 2}
    assert "ToolCodeError" in report["stale"]
    assert "edited_tool" in report["stale"]
    assert "cluster.restart()" in report["stale"]
    assert report["after"] == {"v": 1001}
