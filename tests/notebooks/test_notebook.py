"""``examples/notebook.ipynb``, executed by nbclient in a real Jupyter kernel, checked cell by cell.

Why a real kernel and not ``exec`` of the cells: what the notebook shows depends on being in one.
The progress display picks its HTML table because an IPython kernel runs and updates it through
a display id; tools are shipped to the workers because a kernel's ``__main__`` has no file a
worker could import; ``run()`` blocks inside a kernel whose own event loop is running. nbclient
drives the kernel as Jupyter does and records what a frontend would show, including the
``update_display_data`` messages folded into the output they update.

The kernel is this venv's Python: a kernelspec pointing at ``sys.executable`` is written into a
temporary folder named by ``JUPYTER_PATH`` (the venv's own ``python3`` spec runs ``python`` from
``PATH``, which may be another interpreter). The notebook runs once for the module; each test
checks one thing it shows. Cells are found by their tag (``metadata.tags``), so that cells can be
added or moved without breaking the tests. The notebook starts a LocalCluster (a Redis of its
own) and closes it in its last cell; nbclient shuts the kernel down; the last test checks that
every process the notebook names is gone and the Redis port is closed.
"""

from __future__ import annotations

import ast
import math
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from html_table import parse_table
from polling import wait_until

kernelspec = pytest.importorskip(
    "ipykernel.kernelspec", reason="ipykernel is not installed: no Jupyter kernel can be started"
)

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"
KERNEL = "aethergraph-test-venv"


@dataclass
class Executed:
    nb: Any  # nbformat.NotebookNode, with the outputs of every cell that ran
    error: BaseException | None  # what execute() raised after the kernel started


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executed]:
    """The notebook, executed once in a kernel running this venv's Python."""
    folder = tmp_path_factory.mktemp("notebook")
    kernelspec.install(user=False, prefix=str(folder), kernel_name=KERNEL)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    started: list[bool] = []
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=120,  # per cell
        resources={"metadata": {"path": str(folder)}},  # the kernel's working directory
        on_notebook_start=lambda notebook: started.append(True),
    )
    error: BaseException | None = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(folder / "share" / "jupyter"))
        # the connection file and IPython's profile go here too, not into the home directory
        patch.setenv("JUPYTER_RUNTIME_DIR", str(folder / "runtime"))
        patch.setenv("IPYTHONDIR", str(folder / "ipython"))
        try:
            client.execute()  # shuts the kernel down when it returns or raises
        except Exception as exc:
            if not started:
                pytest.skip(f"no Jupyter kernel could be started for {sys.executable}: {exc!r}")
            error = exc
    result = Executed(nb, error)
    try:
        yield result
    finally:
        _kill_leftover_workers(result.nb)


# -- reading the outputs ----------------------------------------------------------------------
def _cell(nb: Any, tag: str) -> Any:
    found = [cell for cell in nb.cells if tag in cell.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def _stdout(nb: Any, tag: str) -> str:
    outputs = _cell(nb, tag).outputs
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def _printed(nb: Any, tag: str) -> dict[str, Any]:
    """The cell's ``print("label:", value)`` lines as {label: value}."""
    values = {}
    for line in _stdout(nb, tag).splitlines():
        label, _, value = line.partition(":")
        values[label.strip()] = ast.literal_eval(value.strip())
    return values


def _result(nb: Any, tag: str) -> dict[str, Any]:
    """The value of the cell's last expression (an execute_result), from its text/plain repr."""
    outputs = [o for o in _cell(nb, tag).outputs if o.output_type == "execute_result"]
    assert len(outputs) == 1, f"cell {tag!r} shows no result: {_cell(nb, tag).outputs}"
    return ast.literal_eval(outputs[0].data["text/plain"])  # type: ignore[no-any-return]


def _rich(nb: Any, tag: str, output_type: str) -> list[dict[str, str]]:
    return [dict(o.data) for o in _cell(nb, tag).outputs if o.output_type == output_type]


def _table(html: str) -> dict[str, dict[str, str]]:
    """The progress table as {tool: {column: text}} (the total row is ``all tools``)."""
    head, *rows = parse_table(html).rows
    return {row[0]: dict(zip(head, row, strict=True)) for row in rows}


def _mean_energy(n: int, gap: float) -> float:
    """What ``sweep(n)`` computes: the mean of gap / (1 + e^(gap/T)) over its temperatures."""
    temperatures = [0.5 + 0.05 * i for i in range(n)]
    return sum(gap / (1.0 + math.exp(gap / t)) for t in temperatures) / n


# -- the tests --------------------------------------------------------------------------------
def test_every_cell_ran_and_none_raised(executed: Executed) -> None:
    assert executed.error is None, f"the notebook failed:\n{executed.error}"
    errors = [
        o for c in executed.nb.cells for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors, errors
    code = [cell for cell in executed.nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a cell did not run"


def test_the_cluster_shows_its_private_redis(executed: Executed) -> None:
    shown = _rich(executed.nb, "setup", "execute_result")[0]["text/plain"]
    assert re.fullmatch(r"<LocalCluster redis://:\*\*\*@127\.0\.0\.1:\d+/0 workers=2 .*>", shown)


def test_the_sweep_is_right_and_ran_in_worker_processes(executed: Executed) -> None:
    result = _result(executed.nb, "run")
    assert result["n"] == 40
    assert result["mean"] == pytest.approx(_mean_energy(40, gap=1.0), rel=1e-12)
    where = _printed(executed.nb, "where")
    assert where["simulate ran in"] == result["pids"]
    assert result["pids"], "no process id came back from the tool"
    assert where["this kernel"] not in result["pids"]
    assert where["this kernel"] not in where["workers"]
    assert len(where["workers"]) == 2


def test_the_progress_table_was_updated_in_place_to_the_final_counts(executed: Executed) -> None:
    displays = _rich(executed.nb, "run", "display_data")
    # one output: every redraw updated it through its display id instead of appending one
    assert len(displays) == 1, f"{len(displays)} progress outputs"
    html = displays[0]["text/html"]
    assert 'class="aethergraph-progress"' in html
    assert ">done</span>" in html  # the run's state badge
    table = _table(html)
    assert list(table) == ["simulate", "summarize", "all tools"]
    columns = ("done", "running", "queued", "failed", "skipped", "retries", "total")
    expected = {"simulate": 40, "summarize": 1, "all tools": 41}
    for tool, total in expected.items():
        assert [table[tool][c] for c in columns] == [
            str(total),
            "0",
            "0",
            "0",
            "0",
            "0",
            str(total),
        ]
    assert table["all tools"][""].endswith("nodes/s")  # the rate, in the last column
    assert displays[0]["text/plain"].startswith("sweep run ")  # frontends without HTML


def test_the_graph_draws_itself_and_summarizes_a_big_one(executed: Executed) -> None:
    small = _rich(executed.nb, "picture", "execute_result")[0]
    assert small["image/svg+xml"].lstrip().startswith("<svg")
    assert "<svg" in small["text/html"]
    assert "41 nodes: 41 done" in small["text/html"]
    assert ">simulate_39<" in small["image/svg+xml"]  # one box per node
    assert ">summarize_0<" in small["image/svg+xml"]
    big = _rich(executed.nb, "big", "execute_result")[0]
    assert "201 nodes, 2 tools (over max_nodes=60)" in big["image/svg+xml"]
    assert "simulate_199" not in big["image/svg+xml"]  # one box per tool instead
    assert ">200 nodes<" in big["image/svg+xml"]


def test_progress_graph_draws_the_picture_under_the_table(executed: Executed) -> None:
    (live,) = _rich(executed.nb, "live", "display_data")
    html = live["text/html"]
    assert html.index('class="aethergraph-progress"') < html.index("<svg")
    assert "13 nodes: 13 done" in html  # the final drawing: every node done
    assert ">summarize_0<" in html
    assert _result(executed.nb, "live")["mean"] == pytest.approx(_mean_energy(12, 1.0), rel=1e-12)


def test_an_edited_tool_runs_its_new_code_on_the_workers(executed: Executed) -> None:
    edited = _result(executed.nb, "edit")
    assert edited["mean"] == pytest.approx(_mean_energy(40, gap=2.0), rel=1e-12)
    assert edited["mean"] != pytest.approx(_result(executed.nb, "run")["mean"])


def test_a_cached_tool_is_not_run_again(executed: Executed) -> None:
    line = re.compile(r"(\w+) run: ([\d.]+) s, nodes: (\{.*\}), result: (\{.*\})")
    runs = {
        m[1]: (float(m[2]), ast.literal_eval(m[3]), ast.literal_eval(m[4]))
        for m in map(line.fullmatch, _stdout(executed.nb, "cache").splitlines())
        if m
    }
    (first_s, first_nodes, first), (second_s, second_nodes, second) = (
        runs["first"],
        runs["second"],
    )
    assert first_nodes == {"ran": 11}
    assert second_nodes == {"cached": 10, "ran": 1}  # only summarize ran again
    assert first == second == {"mean": pytest.approx(_mean_energy(10, gap=1.0), rel=1e-12)}
    assert second_s < first_s  # ten 0.2 s nodes on two workers, against none
    (picture,) = _rich(executed.nb, "cache", "execute_result")
    svg = picture["image/svg+xml"]
    assert ">cached 10<" in svg  # the legend
    # a dashed border: the legend's swatch and each of the ten reused nodes
    assert svg.count('stroke-dasharray="5 3"') == 11


def test_a_durable_run_is_attached_and_resumed_from_its_record(executed: Executed) -> None:
    printed = _printed(executed.nb, "durable")
    assert printed["attach"] == printed["run"]
    assert printed["run"]["mean"] == pytest.approx(_mean_energy(20, gap=2.0), rel=1e-12)
    (shown,) = _rich(executed.nb, "durable", "execute_result")
    assert "<b>run nb-sweep-1</b> (sweep): done — 21 done" in shown["text/html"]
    assert "<svg" in shown["text/html"]
    assert _stdout(executed.nb, "resume") == "True {'resumed': 21}\n"


def test_restarted_workers_are_new_processes_that_run_the_graph(executed: Executed) -> None:
    before = _printed(executed.nb, "where")
    after = _printed(executed.nb, "restart")
    assert len(after["workers"]) == 2
    assert not set(after["workers"]) & set(before["workers"])
    result = _result(executed.nb, "restart")
    assert result["mean"] == pytest.approx(_mean_energy(20, gap=2.0), rel=1e-12)
    assert not set(result["pids"]) & set(before["simulate ran in"])


def _known_pids(nb: Any) -> set[int]:
    """Every process the notebook printed: the kernel, the workers, the tools' processes (of
    the cells that ran: after a failure, the ones printed before it)."""
    pids: set[int] = set()
    for tag in ("where", "restart"):
        try:
            printed = _printed(nb, tag)
        except (AssertionError, SyntaxError, ValueError):  # no such cell, or it did not print
            continue
        for value in printed.values():
            pids.update(value if isinstance(value, list) else [value])
    return pids


def _running(pid: int) -> bool:
    """Is ``pid`` a live process? A zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_nothing_is_left_running(executed: Executed) -> None:
    """The kernel is shut down and the cluster closed: its processes and its Redis are gone."""
    pids = _known_pids(executed.nb)
    assert len(pids) >= 5  # the kernel, 2 + 2 workers, the tools' processes
    # processes in other process trees exit on their own schedule: nothing to await but them
    wait_until(lambda: not any(map(_running, pids)), f"the notebook's processes {pids} to end")
    shown = _rich(executed.nb, "setup", "execute_result")[0]["text/plain"]
    port = int(re.search(r"127\.0\.0\.1:(\d+)", shown)[1])  # type: ignore[index]
    assert not _port_open(port), f"the cluster's Redis still listens on port {port}"


def _kill_leftover_workers(nb: Any) -> None:
    """Safety net after a failed run: stop worker process groups the notebook left running
    (a worker is a group leader; its cmdline names aethergraph, which guards a reused pid)."""
    for pid in _known_pids(nb):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"aethergraph" in cmdline and os.getpgid(pid) == pid and _running(pid):
                os.killpg(pid, signal.SIGKILL)
        except OSError:  # gone meanwhile (ProcessLookupError), or no /proc
            continue
