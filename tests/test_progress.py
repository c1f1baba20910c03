"""Live progress (``run(..., progress=...)``): exact per-tool counts from real in-process runs,
the notebook view's HTML and text, the terminal bar on a fake TTY, the log lines, the options."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from html_table import parse_table

from aethergraph import ToolError, graph_fn, run, run_async, submit, tool
from aethergraph.errors import ConfigurationError
from aethergraph.progress import (
    Progress,
    ProgressSnapshot,
    ToolCounts,
    graph_snapshot,
    in_notebook,
    snapshot_html,
)
from aethergraph.scheduling.run import RunOptions

_flaky_calls: dict[int, int] = {}


@tool(outputs=["y"])
def pg_square(x: int) -> dict[str, Any]:
    return {"y": x * x}


@tool(outputs=["y"])
def pg_boom(x: int) -> dict[str, Any]:
    raise ValueError(f"<script>alert({x})</script> is not a number")


@tool(outputs=["total"])
def pg_total(xs: list[int]) -> dict[str, Any]:
    return {"total": sum(xs)}


@tool(outputs=["y"], retries=2, retry_backoff=0.0)
def pg_flaky(x: int) -> dict[str, Any]:
    """Fails on its first call for each ``x``, then works: one retry per node."""
    _flaky_calls[x] = _flaky_calls.get(x, 0) + 1
    if _flaky_calls[x] == 1:
        raise RuntimeError("first call fails")
    return {"y": x}


@graph_fn(name="pg_mixed", outputs=["total"])
async def pg_mixed(n: int) -> Any:
    """n squares, one failing node, one node downstream of it (skipped), and their total."""
    squares = [pg_square(x=i)["y"] for i in range(n)]
    pg_total(xs=[pg_boom(x=1)["y"]])
    return {"total": pg_total(xs=squares)["total"]}


@graph_fn(name="pg_ok", outputs=["total"])
async def pg_ok(n: int) -> Any:
    return {"total": pg_total(xs=[pg_square(x=i)["y"] for i in range(n)])["total"]}


@graph_fn(name="pg_retry", outputs=["total"])
async def pg_retry(n: int) -> Any:
    return {"total": pg_total(xs=[pg_flaky(x=i)["y"] for i in range(n)])["total"]}


class FakeTTY(io.StringIO):
    """A terminal as far as tqdm and the display choice can tell."""

    def isatty(self) -> bool:
        return True


EXPECTED_MIXED = {
    "pg_square": ToolCounts(done=5, total=5),
    "pg_boom": ToolCounts(failed=1, total=1),
    "pg_total": ToolCounts(done=1, skipped=1, total=2),
}


def _run_mixed(progress: Progress) -> None:
    with pytest.raises(ToolError):
        run(pg_mixed, n=5, executor="local", on_event=progress)


# -- counting -------------------------------------------------------------------------------------


def test_counts_of_a_run_with_a_failed_and_a_skipped_node() -> None:
    progress = Progress(display="log", stream=io.StringIO())
    _run_mixed(progress)
    assert progress.counts() == EXPECTED_MIXED
    snap = progress.snapshot()
    assert snap.state == "failed"
    assert snap.graph_id == "pg_mixed"
    assert snap.totals == ToolCounts(done=6, failed=1, skipped=1, total=8)
    assert snap.eta is None  # finished: no ETA
    assert snap.rate is not None
    assert snap.rate > 0
    assert snap.error is not None
    assert "pg_boom" in snap.error


def test_retries_are_counted_and_the_retried_node_ends_done() -> None:
    _flaky_calls.clear()
    progress = Progress(display="log", stream=io.StringIO())
    assert run(pg_retry, n=3, executor="local", on_event=progress) == {"total": 3}
    assert progress.counts()["pg_flaky"] == ToolCounts(done=3, retries=3, total=3)
    assert progress.snapshot().state == "done"


def test_counts_need_no_particular_event_order() -> None:
    """A node cancelled before it was ever added, a retry, an unknown event kind: fed by hand
    (no running loop, so nothing is drawn until close)."""

    class Event:
        def __init__(self, type: str, node_id: str = "", tool: str = "pg_t") -> None:
            self.type, self.node_id, self.tool = type, node_id, tool
            self.run_id, self.graph_id, self.status, self.error = "r1", "g", "cancelled", "stop"

    out = io.StringIO()
    progress = Progress(display="log", stream=out)
    for kind, node in [
        ("run_started", ""),
        ("added", "a"),
        ("started", "a"),
        ("retrying", "a"),
        ("added", "b"),
        ("started", "a"),
        ("cancelled", "c"),  # never added
        ("some_new_kind", "a"),
        ("cancelled", "b"),
        ("cancelled", "a"),
    ]:
        progress(Event(kind, node))
    assert progress.counts() == {"pg_t": ToolCounts(skipped=3, retries=1, total=3)}
    assert out.getvalue() == ""  # nothing drawn while counting
    progress(Event("run_finished"))
    assert out.getvalue().count("\n") == 1
    assert "g run r1 cancelled in" in out.getvalue()
    progress.close("done")  # closing again draws nothing more
    assert out.getvalue().count("\n") == 1


def test_a_started_node_is_queued_until_its_executor_reports_it_running() -> None:
    """With an executor that reports running (Celery), ``started`` means sent: the node counts
    as queued until its ``running`` event; without one, a started node is running."""

    class Event:
        def __init__(self, type: str, node_id: str) -> None:
            self.type, self.node_id, self.tool = type, node_id, "pg_t"

    def feed(progress: Progress, events: list[tuple[str, str]]) -> ToolCounts:
        for kind, node in events:
            progress(Event(kind, node))
        return progress.counts()["pg_t"]

    sent = [("added", "a"), ("added", "b"), ("started", "a"), ("started", "b")]
    reporting = Progress(display="log", stream=io.StringIO(), reports_running=True)
    assert feed(reporting, sent) == ToolCounts(queued=2, total=2)
    assert feed(reporting, [("running", "a")]) == ToolCounts(queued=1, running=1, total=2)
    assert feed(reporting, [("done", "a"), ("done", "b")]) == ToolCounts(done=2, total=2)
    plain = Progress(display="log", stream=io.StringIO())
    assert feed(plain, sent) == ToolCounts(running=2, total=2)


# -- the notebook view (its HTML and text, built directly: no kernel here) -------------------------


def test_html_has_a_row_per_tool_with_the_counts_and_a_total_row() -> None:
    progress = Progress(display="log", stream=io.StringIO())
    _run_mixed(progress)
    table = parse_table(progress.snapshot()._repr_html_())
    header, *rows = table.rows
    columns = header[2:9]
    assert [h for h in columns] == [
        "done",
        "running",
        "queued",
        "failed",
        "skipped",
        "retries",
        "total",
    ]
    by_tool = {row[0]: dict(zip(columns, map(int, row[2:9]), strict=True)) for row in rows}
    assert list(by_tool) == ["pg_square", "pg_boom", "pg_total", "all tools"]
    for name, counts in [*EXPECTED_MIXED.items(), ("all tools", progress.snapshot().totals)]:
        shown = by_tool[name]
        assert shown == {c: getattr(counts, c) for c in shown}, name
    assert "nodes/s" in rows[-1][-1]  # the total row's rate


def test_html_is_static_and_escapes_user_text() -> None:
    progress = Progress(display="log", stream=io.StringIO())
    _run_mixed(progress)
    html = snapshot_html(progress.snapshot())
    table = parse_table(html)
    assert not table.tags & {"script", "link", "style", "iframe", "img"}
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "http" not in html  # nothing fetched
    assert re.search(r">failed</span>", html)  # the state badge


def test_bar_segments_are_sized_by_count_and_start_at_the_left() -> None:
    counts = ToolCounts(queued=5, running=1, done=2, failed=1, skipped=1, total=10)
    html = ProgressSnapshot("r", "g", "running", 1.0, {"pg_t": counts})._repr_html_()
    bar = html[html.index("<td", html.index(">pg_t<")) :]
    bar = bar[: bar.index("</td>")]
    assert "text-align:left" in bar[bar.index("<div") : bar.index(">", bar.index("<div"))]
    widths = re.findall(r'title="(\d+) (\w+)"[^>]*width:([\d.]+)%', bar)
    expected = [("2", "done"), ("1", "failed"), ("1", "skipped"), ("1", "running")]
    assert widths == [(n, name, f"{10 * int(n)}.0") for n, name in expected]


def test_text_view_for_frontends_without_html() -> None:
    progress = Progress(display="log", stream=io.StringIO())
    _run_mixed(progress)
    text = repr(progress.snapshot())
    lines = text.splitlines()
    assert lines[0].startswith("pg_mixed run ")
    assert ": failed, elapsed" in lines[0]
    row = next(line for line in lines if line.strip().startswith("pg_total"))
    assert row.split()[1:] == ["1", "0", "0", "0", "1", "0", "2"]
    assert "<td" not in text
    assert "<span" not in text


def test_many_tools_share_one_row_past_the_limit() -> None:
    tools = {f"pg_t{i}": ToolCounts(done=1, total=1) for i in range(40)}
    snap = ProgressSnapshot("r" * 32, "g", "running", 2.0, tools)
    rows = parse_table(snap._repr_html_()).rows
    assert len(rows) == 1 + 25 + 1  # header, 24 tools and "… 16 more tools", total
    assert rows[-2][0] == "… 16 more tools"
    assert rows[-2][2] == "16"
    assert snap.eta == 0.0
    assert snap.rate == 20.0


def test_graph_snapshot_and_picture_from_a_finished_graph() -> None:
    progress = Progress(display="log", stream=io.StringIO())
    _run_mixed(progress)
    graph = pg_mixed.last_graph
    assert graph is not None
    snap = graph_snapshot(graph, state="failed", elapsed=1.0, picture=True)
    assert snap.tools == progress.counts()
    assert snap.picture is not None
    assert "<svg" in snap.picture
    assert "<svg" in snapshot_html(snap)


def test_no_kernel_in_the_test_process() -> None:
    assert not in_notebook()


# -- terminal and log displays ---------------------------------------------------------------------


def _last_line(output: str) -> str:
    return [part for part in re.split(r"[\r\n]", output) if part.strip()][-1]


def test_terminal_bar_on_a_tty_ends_with_the_final_counts() -> None:
    tty = FakeTTY()
    progress = Progress(stream=tty)  # auto: a TTY and no kernel, so the tqdm bar
    _run_mixed(progress)
    output = tty.getvalue()
    assert output.endswith("\n")  # the bar was closed and left its line
    last = _last_line(output)
    assert last.startswith("pg_mixed failed:")
    assert "8/8" in last
    assert "100%" in last
    assert "pg_square 5/5 ✓" in last
    assert "pg_boom 0/1 ✓ 1 ✗" in last
    assert "pg_total 1/2 ✓ 1 ⊘" in last


def test_explicit_progress_without_a_terminal_writes_a_summary_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(pg_ok, n=3, executor="local", progress=True) == {"total": 5}
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # a short run: no periodic line, only the summary
    assert re.fullmatch(
        r"\[aethergraph\] pg_ok run \w{8} done in \d\d:\d\d: 4 nodes "
        r"\(4 done, 0 failed, 0 skipped, 0 retries\), \S+ nodes/s",
        lines[0],
    ), lines[0]


def test_no_progress_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(pg_ok, n=2, executor="local") == {"total": 1}
    assert run(pg_ok, n=2, executor="local", progress=False) == {"total": 1}
    assert capsys.readouterr().err == ""


def test_progress_with_an_on_event_listener_both_see_every_event(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []

    def listener(event: Any) -> None:
        seen.append(event.type)
        raise RuntimeError("a broken listener does not starve the progress display")

    assert run(pg_ok, n=2, executor="local", progress="graph", on_event=listener) == {"total": 1}
    assert seen[0] == "run_started"
    assert seen[-1] == "run_finished"
    assert "3 nodes (3 done" in capsys.readouterr().err


def test_submit_and_run_async_take_progress(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    handle = submit(pg_ok, n=2, executor="local", progress=True)
    assert handle.result(timeout=10) == {"total": 1}
    assert asyncio.run(run_async(pg_ok, n=3, executor="local", progress=True)) == {"total": 5}
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert all(" done in " in line for line in lines), lines
    assert "3 nodes" in lines[0]
    assert "4 nodes" in lines[1]


def test_run_handle_shows_its_status_as_html() -> None:
    handle = submit(pg_mixed, n=3, executor="local")
    with pytest.raises(ToolError):
        handle.result(timeout=10)
    html = handle._repr_html_()
    assert handle.run_id[:8] in html
    assert "pg_mixed" in html
    rows = {row[0]: row for row in parse_table(html).rows[1:]}
    assert rows["pg_square"][2] == "3"
    assert rows["pg_boom"][5] == "1"
    assert re.search(r">failed</span>", html)
    assert "<svg" in html
    assert repr(handle).startswith("<RunHandle pg_mixed run=")


CLI_TARGET = """
from aethergraph import graph_fn, tool


@tool(outputs=["y"])
def pg_cli_double(x: int) -> dict:
    return {"y": 2 * x}


@graph_fn(name="pg_cli", outputs=["y"])
async def pg_cli(x: int):
    return {"y": pg_cli_double(x=pg_cli_double(x=x)["y"])["y"]}
"""


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], "per-node"),  # stderr is no terminal here: per-node lines, as before
        (["--progress"], "summary"),
        (["--no-progress"], "nothing"),
        (["--quiet"], "nothing"),
        (["--quiet", "--progress"], "summary"),
    ],
)
def test_cli_progress_flags(
    flags: list[str], expected: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from aethergraph.cli import main

    target = tmp_path / "pg_cli_target.py"
    target.write_text(CLI_TARGET)
    assert main(["run", f"{target}:pg_cli", "-i", "x=3", "--local", *flags]) == 0
    out, err = capsys.readouterr()
    assert '"y": 12' in out
    lines = [line for line in err.splitlines() if "nodes in " not in line]  # the timing line
    if expected == "per-node":
        # "[1/1]" when the first node ends before the body adds the second
        assert lines[0].split()[0] in ("[1/1]", "[1/2]"), err
        assert lines[1].split()[0] == "[2/2]", err
    elif expected == "summary":
        assert len(lines) == 1, err
        assert re.match(r"\[aethergraph\] pg_cli run \w{8} done in .*: 2 nodes \(2 done", lines[0])
    else:
        assert lines == [], err


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "Graph", 1, 0.5, ["graph"], ""])
def test_bad_progress_values_are_configuration_errors(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="progress must be True, False, None"):
        RunOptions(progress=value)
    with pytest.raises(ConfigurationError, match="progress must be"):
        run(pg_ok, n=1, executor="local", progress=value)


def test_bad_display_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="display must be one of"):
        Progress(display="html")  # type: ignore[arg-type]


def test_progress_is_a_run_option_and_a_same_named_input_goes_in_the_mapping() -> None:
    assert "progress" in RunOptions.names()

    @graph_fn(name="pg_named", outputs=["out"])
    async def named(progress: int) -> Any:
        return {"out": pg_square(x=progress)["y"]}

    assert run(named, {"progress": 3}, executor="local", progress=False) == {"out": 9}


@pytest.fixture(autouse=True)
def _no_leftover_flaky_state() -> Iterator[None]:
    yield
    _flaky_calls.clear()
