"""Live progress of a run: per-tool counts as a notebook table, a terminal bar or log lines.

``run(gf, progress=...)`` (also ``run_async``, ``submit``, ``aethergraph run``) attaches a
:class:`Progress` to the run next to its ``on_event`` listener:

- ``None`` (the default) and ``False``: no display — a library call prints nothing unasked;
  ``aethergraph run`` asks for ``True`` itself when stderr is a terminal.
- ``True``: a display chosen when the run opens. In Jupyter (an IPython kernel runs), one HTML
  table updated in place: a row per tool with a stacked status bar and counts, a total row with
  rate and ETA, a status line; inline styles only (no script, no CDN) so a notebook saved to HTML
  shows it offline, and a plain-text ``repr`` for frontends without HTML. On a terminal (stderr),
  a tqdm bar over the nodes known so far (its total grows as the body adds nodes), per-tool
  counts as its postfix. Otherwise (CI, Slurm, cron logs): a plain line on stderr every ~10 s and
  a summary line at the end — progress explicitly asked for should show in a log file too.
- ``"graph"``: as ``True``, plus the live graph picture (:mod:`aethergraph.graph.picture`) under
  the notebook table, redrawn at most once a second; outside a notebook the same as ``True``.

Why it is built like this: events arrive on the runtime thread, 10^4+ a second, and listeners run
synchronously there. So the listener only counts (a few dict operations per event, no I/O); all
drawing happens from a timer on the same loop — at most ~5 redraws a second — and once more at
the end with the final state. A node's phase is kept until it finishes, which makes the counts
exact whatever the order of events (a node cancelled before it was "added", a retry re-queued).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

from tqdm import tqdm

from aethergraph.errors import ConfigurationError
from aethergraph.graph.export import STATUS_COLORS
from aethergraph.graph.picture import graph_html
from aethergraph.graph.task_graph import TaskGraph

log = logging.getLogger("aethergraph")

ProgressOption = bool | str | None
DisplayKind = Literal["auto", "notebook", "terminal", "log"]
#: the string values of ``progress=`` (besides True, False and None)
PROGRESS_MODES = ("graph",)
_DISPLAYS = ("auto", "notebook", "terminal", "log")

# the phases a node is counted in, and two more counters, as indexes of a tool's tally list
QUEUED, RUNNING, DONE, FAILED, SKIPPED, RETRIES, TOTAL = range(7)
# by node event type; a retrying node is back in the queue, as its status (pending) says
_PHASE = {"added": QUEUED, "retrying": QUEUED, "started": RUNNING, "done": DONE, "failed": FAILED}
_PHASE |= {"skipped": SKIPPED, "cancelled": SKIPPED, "running": RUNNING}
# where the executor reports running nodes (Celery), a started node is sent, still queued
_PHASE_SENT = {**_PHASE, "started": QUEUED}
_STATUS_PHASE = {**_PHASE, "pending": QUEUED, "queued": QUEUED}  # by TaskNode.phase
# the picture's palette (aethergraph.graph.export), so table and picture agree
_COLOR = {name: STATUS_COLORS[name][1] for name in ("done", "running", "failed", "skipped")}
_COLOR["queued"] = STATUS_COLORS["pending"][0]
_STATE_COLOR = {"done": "#2e7d32", "failed": "#c62828", "running": "#1565c0"}
_SANS = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MAX_ROWS = 25  # tools shown one per row; the rest share one row
_PICTURE_EVERY = 1.0  # seconds between two renderings of the (heavier) graph picture


def check_progress_option(value: object) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` is a valid ``progress=`` value."""
    if value is None or isinstance(value, bool) or value in PROGRESS_MODES:
        return
    raise ConfigurationError(
        f"progress must be True, False, None or one of {list(PROGRESS_MODES)}, got {value!r} "
        "(a graph input named 'progress' goes in the inputs mapping: run(gf, {'progress': ...}))"
    )


@dataclass(frozen=True, slots=True)
class ToolCounts:
    """One tool's nodes by phase. ``queued`` includes nodes waiting to retry, and nodes sent to
    workers that have not begun them (``Executor.reports_running``); ``skipped`` counts skipped
    and cancelled nodes; ``retries`` is how many retries were scheduled so far."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    total: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    @classmethod
    def combined(cls, counts: Iterable[ToolCounts]) -> ToolCounts:
        return cls(*(sum(column) for column in zip(*map(dataclasses.astuple, counts), strict=True)))


@dataclass(frozen=True, slots=True, repr=False)
class ProgressSnapshot:
    """What a display shows at one moment. It is also the object given to IPython's display:
    ``_repr_html_`` for notebooks, ``repr`` (plain text) for every other frontend."""

    run_id: str
    graph_id: str
    state: str  # starting, running, done, failed or cancelled
    elapsed: float
    tools: dict[str, ToolCounts]
    error: str | None = None
    picture: str | None = None  # the graph picture's HTML, drawn under the table

    @property
    def totals(self) -> ToolCounts:
        return ToolCounts.combined(self.tools.values())

    @property
    def rate(self) -> float | None:
        """Finished nodes per second since the run opened (``None`` before the first)."""
        finished = self.totals.finished
        return finished / self.elapsed if finished and self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds until the nodes known so far finish, at the rate so far."""
        rate, totals = self.rate, self.totals
        if self.state != "running" or not rate:
            return None
        return (totals.total - totals.finished) / rate

    def _repr_html_(self) -> str:
        return snapshot_html(self)

    def __repr__(self) -> str:
        return snapshot_text(self)


def rate_text(rate: float | None) -> str:
    """``12.3k nodes/s``, or ``2.50 s/node`` when slower than one a second (as tqdm does)."""
    if not rate:
        return "? nodes/s"
    if rate >= 1:
        return f"{tqdm.format_sizeof(rate)} nodes/s"
    return f"{tqdm.format_sizeof(1 / rate)} s/node"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rows(tools: dict[str, ToolCounts]) -> list[tuple[str, ToolCounts]]:
    """One row per tool in order of first appearance; past ``_MAX_ROWS`` the rest share a row."""
    rows = list(tools.items())
    if len(rows) <= _MAX_ROWS:
        return rows
    rest = rows[_MAX_ROWS - 1 :]
    summed = ToolCounts.combined(count for _, count in rest)
    return [*rows[: _MAX_ROWS - 1], (f"… {len(rest)} more tools", summed)]


def _bar_html(counts: ToolCounts, width: int) -> str:
    """A stacked bar (done, failed, skipped, running; queued is the background) in inline
    styles: spans of percentage widths in a box with font-size 0, so no gap shows between them."""
    segments = []
    if counts.total:
        for name in ("done", "failed", "skipped", "running"):
            value = getattr(counts, name)
            if value:
                share = int(10000 * value / counts.total) / 100  # floor: the sum stays <= 100
                segments.append(
                    f'<span title="{value} {name}" style="display:inline-block;height:100%;'
                    f'width:{share}%;background:{_COLOR[name]}"></span>'
                )
    return (
        f'<div style="width:{width}px;height:10px;background:{_COLOR["queued"]};{_EDGE};'
        "border-radius:2px;overflow:hidden;white-space:nowrap;font-size:0;line-height:0;"
        'text-align:left">'  # segments from the left, whatever the cell's alignment
        f"{''.join(segments)}</div>"
    )


_COLUMNS = ("done", "running", "queued", "failed", "skipped", "retries", "total")
_CELL = "padding:2px 8px;text-align:right;border:none"
_EDGE = "border:1px solid #b0bec5"  # queued is a pale fill: an edge keeps it visible on white


def _number(value: int) -> str:
    return str(value) if value else '<span style="color:#9e9e9e">0</span>'


def _row_html(name: str, counts: ToolCounts, last: str, *, bold: bool = False) -> str:
    weight = "font-weight:600;" if bold else ""
    border = "border-top:1px solid #bdbdbd;" if bold else ""
    cells = "".join(
        f'<td style="{_CELL};{weight}{border}">{_number(getattr(counts, c))}</td>' for c in _COLUMNS
    )
    return (
        f'<tr><td style="{_CELL};text-align:left;{weight}{border}font-family:monospace">'
        f'{html.escape(name)}</td><td style="{_CELL};{border}">{_bar_html(counts, 160)}</td>'
        f'{cells}<td style="{_CELL};text-align:left;{border}white-space:nowrap">{last}</td></tr>'
    )


def _status_line(snap: ProgressSnapshot) -> str:
    color = _STATE_COLOR.get(snap.state, "#616161")
    badge = (
        f'<span style="color:#fff;background:{color};border-radius:3px;padding:0 6px">'
        f"{html.escape(snap.state)}</span>"
    )
    run = html.escape(snap.run_id[:8])
    timing = f"{tqdm.format_interval(snap.elapsed)} elapsed"
    return (
        f'<div style="margin:0 0 4px 0"><b>{html.escape(snap.graph_id)}</b> · run '
        f'<code title="{html.escape(snap.run_id)}">{run}</code> · {badge} · {timing}</div>'
    )


def snapshot_html(snap: ProgressSnapshot) -> str:
    """The notebook view: status line, a table of tools with a total row, the graph picture."""
    head = "".join(
        f'<th style="{_CELL};font-weight:600">'
        + (
            f'<span style="display:inline-block;width:9px;height:9px;background:{_COLOR[c]};'
            f'{_EDGE};margin-right:3px"></span>'
            if c in _COLOR
            else ""
        )
        + f"{c}</th>"
        for c in _COLUMNS
    )
    rows = "".join(_row_html(name, counts, "") for name, counts in _rows(snap.tools))
    totals = snap.totals
    pace = rate_text(snap.rate)
    if snap.eta:
        pace += f" · ETA {tqdm.format_interval(snap.eta)}"
    footer = _row_html("all tools", totals, pace, bold=True)
    error = html.escape(_clip(snap.error or "", 300))
    error = f'<div style="color:{_COLOR["failed"]};margin:4px 0 0 0">{error}</div>' if error else ""
    empty = "" if snap.tools else '<div style="color:#757575">no nodes yet</div>'
    picture = f'<div style="margin:8px 0 0 0">{snap.picture}</div>' if snap.picture else ""
    return (
        f'<div class="aethergraph-progress" style="font-family:{_SANS};font-size:13px;'
        f'line-height:1.4;max-width:100%;overflow-x:auto">{_status_line(snap)}'
        '<table style="border-collapse:collapse;margin:0;font-size:13px">'
        f'<thead><tr><th style="{_CELL};text-align:left">tool</th><th style="{_CELL}"></th>'
        f'{head}<th style="{_CELL}"></th></tr></thead><tbody>{rows}{footer}</tbody></table>'
        f"{empty}{error}{picture}</div>"
    )


def snapshot_text(snap: ProgressSnapshot) -> str:
    """The plain-text view (a notebook frontend without HTML, ``repr`` in a console)."""
    width = max([len("all tools"), *(len(name) for name, _ in _rows(snap.tools))])
    lines = [f"{snap.graph_id} run {snap.run_id[:8]}: {snap.state}, {_timing(snap)}"]
    lines.append("  " + "tool".ljust(width) + "".join(f"{c:>9}" for c in _COLUMNS))
    for name, counts in [*_rows(snap.tools), ("all tools", snap.totals)]:
        values = "".join(f"{getattr(counts, c):>9}" for c in _COLUMNS)
        lines.append(f"  {name.ljust(width)}{values}")
    lines.append(f"  {rate_text(snap.rate)}")
    if snap.error:
        lines.append(f"  error: {_clip(snap.error, 300)}")
    return "\n".join(lines)


def _timing(snap: ProgressSnapshot) -> str:
    eta = snap.eta
    text = f"elapsed {tqdm.format_interval(snap.elapsed)}"
    return text + (f", ETA {tqdm.format_interval(eta)}" if eta else "")


def tool_postfix(tools: dict[str, ToolCounts], marks: str = "✓✗⊘↻") -> str:
    """``simulate 40/200 ✓ 3 ✗ · reduce 0/1``: done of total, then failed, skipped, retries."""
    ok, failed, skipped, retried = marks[0], marks[1], marks[2], marks[3]
    parts = []
    for name, c in tools.items():
        text = f"{name} {c.done}/{c.total} {ok}"
        for value, mark in ((c.failed, failed), (c.skipped, skipped), (c.retries, retried)):
            if value:
                text += f" {value} {mark}"
        parts.append(text)
    return " · ".join(parts)


def summary_line(snap: ProgressSnapshot) -> str:
    """The one-line account of a run for logs: progress so far, or how it ended."""
    t = snap.totals
    counts = f"{t.done} done, {t.failed} failed, {t.skipped} skipped, {t.retries} retries"
    head = f"[aethergraph] {snap.graph_id} run {snap.run_id[:8]}"
    if snap.state == "running":
        return (
            f"{head}: {t.finished}/{t.total} nodes finished ({counts}, {t.running} running), "
            f"{rate_text(snap.rate)}, {_timing(snap)} | {tool_postfix(snap.tools, 'ox-r')}"
        )
    line = (
        f"{head} {snap.state} in {tqdm.format_interval(snap.elapsed)}: {t.total} nodes "
        f"({counts}), {rate_text(snap.rate)}"
    )
    return line + (f" | {_clip(snap.error, 200)}" if snap.error else "")


def graph_snapshot(
    graph: TaskGraph, *, state: str, elapsed: float, error: str | None = None, picture: bool
) -> ProgressSnapshot:
    """A snapshot read from a graph's node statuses (a :class:`RunHandle` has no listener)."""
    tallies: dict[str, list[int]] = {}
    for node in graph:  # a copy of the node list: safe while the body adds nodes
        tally = tallies.get(node.tool)
        if tally is None:
            tally = tallies[node.tool] = [0] * 7
        tally[_STATUS_PHASE[node.phase]] += 1
        tally[RETRIES] += max(0, node.attempts - 1)
        tally[TOTAL] += 1
    drawing = _draw_picture(graph) if picture else None
    tools = {name: ToolCounts(*tally) for name, tally in tallies.items()}
    return ProgressSnapshot(graph.run_id, graph.graph_id, state, elapsed, tools, error, drawing)


def _draw_picture(graph: TaskGraph) -> str | None:
    """The graph picture, or ``None`` if drawing failed (logged: the table still shows)."""
    try:
        return graph_html(graph)
    except Exception:
        log.exception("could not draw the picture of graph %s", graph.graph_id)
        return None


def in_notebook() -> bool:
    """Does an IPython kernel (Jupyter, VS Code, Colab) run this process? IPython is optional
    and slow to import: a kernel has imported it already, so it is looked up, never imported."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream: not a terminal
        return False


class _Display(Protocol):
    interval: float  # seconds between two timer ticks
    every_change: bool  # redraw at a tick when counts changed (else only every `refresh` s)
    refresh: float  # redraw this often anyway: the elapsed time moves

    def draw(self, snap: ProgressSnapshot) -> None: ...

    def close(self, snap: ProgressSnapshot) -> None: ...


class _NotebookDisplay:
    """One display handle, updated in place; the graph picture re-rendered at most once a
    second (and at the end), only when the counts changed since the last one."""

    interval, every_change, refresh = 0.2, True, 1.0

    def __init__(self, graph: TaskGraph | None) -> None:
        self._graph = graph  # None: no picture
        self._handle: Any = None
        self._picture: str | None = None
        self._pictured: tuple[ToolCounts, float] | None = None  # counts and time of the picture

    def _with_picture(self, snap: ProgressSnapshot, final: bool) -> ProgressSnapshot:
        if self._graph is None:
            return snap
        now, totals = time.monotonic(), snap.totals
        last = self._pictured
        if final or last is None or (last[0] != totals and now - last[1] >= _PICTURE_EVERY):
            self._picture = _draw_picture(self._graph)
            self._pictured = (totals, now)
        return dataclasses.replace(snap, picture=self._picture)

    def draw(self, snap: ProgressSnapshot, final: bool = False) -> None:
        view = self._with_picture(snap, final)
        if self._handle is None:
            from IPython.display import display

            self._handle = display(view, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(view)

    def close(self, snap: ProgressSnapshot) -> None:
        self.draw(snap, final=True)


class _TerminalDisplay:
    """A tqdm bar on a terminal: finished of known nodes, per-tool counts as its postfix."""

    interval, every_change, refresh = 0.2, True, 1.0

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: Any = None
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "✓✗⊘↻".encode(encoding)
            self._marks = "✓✗⊘↻"
        except (LookupError, UnicodeEncodeError):  # an ASCII or unknown terminal encoding
            self._marks = "ox-r"

    def draw(self, snap: ProgressSnapshot) -> None:
        bar = self._bar
        if bar is None:
            bar = self._bar = tqdm(
                total=None,
                desc=snap.graph_id,
                unit="node",
                file=self._stream,
                leave=True,
                dynamic_ncols=True,
                delay=1e-9,  # no line of its own at creation: the refresh below draws the first
            )
            bar.start_t -= snap.elapsed  # the run opened before the first draw
        totals = snap.totals
        bar.total = totals.total or None
        bar.n = totals.finished
        postfix = tool_postfix(snap.tools, self._marks)
        width = bar.format_dict.get("ncols")
        if width and width > 0:  # room for the bar: a long postfix would squeeze it to nothing
            postfix = _clip(postfix, max(24, width - 60))
        bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def close(self, snap: ProgressSnapshot) -> None:
        self.draw(snap)
        self._bar.set_description_str(f"{snap.graph_id} {snap.state}", refresh=False)
        self._bar.close()  # draws the last line (leave=True) and ends it


class _LogDisplay:
    """Plain lines for logs (no terminal, no kernel): one every ~10 s, a summary at the end."""

    interval, every_change, refresh = 10.0, False, 10.0

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def draw(self, snap: ProgressSnapshot) -> None:
        print(summary_line(snap), file=self._stream, flush=True)

    close = draw  # the summary: the same line, with the final state


class Progress:
    """An event listener that counts a run's nodes per tool and shows them (see the module).

    Use it through ``run(..., progress=True)``, or pass one as ``on_event`` (it finishes itself
    on the ``run_finished`` event). ``display``: ``"auto"`` (notebook, else terminal, else log
    lines), or one of ``"notebook"``, ``"terminal"``, ``"log"``. ``graph``: the run's graph,
    drawn under the notebook table when ``picture`` is true. ``stream``: where terminal and log
    output go (stderr when ``None``). ``reports_running``: the run's executor reports when a
    node begins (``Executor.reports_running``): a started node counts as queued until then.
    """

    def __init__(
        self,
        *,
        display: DisplayKind = "auto",
        graph: TaskGraph | None = None,
        picture: bool = False,
        stream: TextIO | None = None,
        reports_running: bool = False,
    ) -> None:
        if display not in _DISPLAYS:
            raise ConfigurationError(f"display must be one of {list(_DISPLAYS)}, got {display!r}")
        out = stream if stream is not None else sys.stderr
        if display == "auto":
            display = "notebook" if in_notebook() else "terminal" if _isatty(out) else "log"
        if display == "notebook":
            self.display: _Display | None = _NotebookDisplay(graph if picture else None)
        else:
            self.display = _TerminalDisplay(out) if display == "terminal" else _LogDisplay(out)
        self.run_id = graph.run_id if graph is not None else ""
        self.graph_id = graph.graph_id if graph is not None else ""
        self.state = "starting"
        self.error: str | None = None
        self._tools: dict[str, list[int]] = {}
        self._phase_of = _PHASE_SENT if reports_running else _PHASE
        self._phases: dict[str, int] = {}  # unfinished nodes' phases
        self._started = time.monotonic()
        self._ended: float | None = None
        self._dirty = False
        self._opened = False
        self._closed = False
        self._drawn_at = float("-inf")
        self._lock = threading.Lock()  # drawing: the timer's thread and close()'s may differ
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_option(
        cls, option: ProgressOption, graph: TaskGraph, *, reports_running: bool = False
    ) -> Progress | None:
        """The progress display ``progress=option`` asks for, or ``None`` for none."""
        check_progress_option(option)
        if option is None or option is False:
            return None
        return cls(graph=graph, picture=option == "graph", reports_running=reports_running)

    def __call__(self, event: Any) -> None:
        """Count one event: no I/O here (the timer draws), except at the run's end. Events are
        told apart by ``type`` (node events by their kind), not class: one dict lookup."""
        kind = event.type
        phase = self._phase_of.get(kind)
        if phase is not None:
            tally = self._tools.get(event.tool)
            if tally is None:
                tally = self._tools[event.tool] = [0] * 7
            previous = self._phases.get(event.node_id)
            if previous is None:
                tally[TOTAL] += 1
            else:
                tally[previous] -= 1
            tally[phase] += 1
            if phase >= DONE:
                self._phases.pop(event.node_id, None)
            else:
                self._phases[event.node_id] = phase
                if kind == "retrying":
                    tally[RETRIES] += 1
            self._dirty = True
        elif kind in ("run_started", "run_finished"):
            self.run_id, self.graph_id = event.run_id, event.graph_id
            if kind == "run_finished":
                self.close(event.status, event.error)
                return
        else:  # a kind of event this version does not know
            return
        if not self._opened:
            self._open()

    def counts(self) -> dict[str, ToolCounts]:
        """Each tool's counts so far, in order of first appearance."""
        return {name: ToolCounts(*tally) for name, tally in self._tools.items()}

    def snapshot(self) -> ProgressSnapshot:
        end = self._ended if self._ended is not None else time.monotonic()
        return ProgressSnapshot(
            self.run_id, self.graph_id, self.state, end - self._started, self.counts(), self.error
        )

    def close(self, state: str | None = None, error: str | None = None) -> None:
        """Draw the final state once and stop the timer (later calls do nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ended = time.monotonic()
            self.state, self.error = state or self.state, error or self.error
            self._stop_timer()
            display, self.display = self.display, None
            if display is not None:
                try:
                    display.close(self.snapshot())
                except Exception:
                    log.exception("could not draw the final progress of run %s", self.run_id)

    def _open(self) -> None:
        """The first event: start the redraw timer on the loop delivering events."""
        self._opened = True
        self.state = "running"
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # events fed by hand (a replay, a test): drawn at close only
            return
        display = self.display
        if display is not None and not display.every_change:
            self._drawn_at = time.monotonic()  # log lines: the first one after `refresh` s
        self._tick()

    def _tick(self) -> None:
        with self._lock:
            display = self.display
            if self._closed or display is None or self._loop is None:
                return
            now = time.monotonic()
            if (display.every_change and self._dirty) or now - self._drawn_at >= display.refresh:
                self._dirty = False
                self._drawn_at = now
                try:
                    display.draw(self.snapshot())
                except Exception:  # a display that fails once would fail at every tick
                    log.exception("progress display of run %s failed; it stops", self.run_id)
                    self.display = None
                    return
            self._timer = self._loop.call_later(display.interval, self._tick)

    def _stop_timer(self) -> None:
        """Cancel the next tick on its loop (close() may run on another thread)."""
        timer, loop, self._timer = self._timer, self._loop, None
        if timer is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(timer.cancel)
