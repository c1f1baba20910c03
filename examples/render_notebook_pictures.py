"""Render the pictures of docs/notebooks.md from examples/notebook.ipynb.

    .venv/bin/python examples/render_notebook_pictures.py

Executes the notebook in a Jupyter kernel running this Python (nbclient; a LocalCluster of its
own, ~25 s), converts it to HTML with nbconvert's ``lab`` template (JupyterLab's own styles, so
the pictures look as they do in JupyterLab), and screenshots single outputs of it with headless
Chromium: a copy of the page hides every other cell, the code, the prompts, and the outputs not
wanted; Pillow crops the screenshot to what is left. The PNGs go to docs/img/notebook-*.png.

Why outputs of a real run and not HTML made up for the docs: the pictures then show what the
current code displays, and re-running this after a change to the progress table or the graph
picture updates the docs.

A notebook keeps only the last state of a display updated in place, so for the live
``progress="graph"`` picture this script also records the updates as they arrive and shows the
one taken nearest to half-way through the run (nodes running, done and queued at once).

Needs Chromium (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH, or
``CHROMIUM=/path``) and Pillow. Run by the test suite (tests/test_examples.py runs every
example; ``PYTEST_CURRENT_TEST`` is set), it writes into a temporary folder instead of docs/img,
because a test run must not rewrite tracked files (the pictures differ in every run: process
ids, timings); and without Chromium there it stops after the conversion instead of failing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from ipykernel.kernelspec import install
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
KERNEL = "aethergraph-render"
SCALE = 2  # device pixels per CSS pixel: sharp on high-density screens
WIDTH = 900  # CSS pixels of the page: about a notebook's width

# picture file -> (cell tag, which of the cell's outputs: "display" or "result")
PICTURES = {
    "notebook-progress.png": ("run", "display"),  # the progress table, after the run
    "notebook-live.png": ("live", "display"),  # progress="graph", half-way through
    "notebook-graph.png": ("cache", "result"),  # a small graph, cached nodes dashed
    "notebook-sweep.png": ("picture", "result"),  # the 41 nodes of sweep(40)
    "notebook-sweep-200.png": ("big", "result"),  # 201 nodes: summarized by tool
}


class RecordingClient(NotebookClient):
    """Keeps every in-place update of the display outputs of the cell tagged ``live``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.updates: list[dict[str, Any]] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] == "update_display_data" and "live" in _tags(cell):
            self.updates.append(dict(msg["content"]["data"]))
        return super().process_message(msg, cell, cell_index)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _cell(nb: Any, tag: str) -> Any:
    (cell,) = (cell for cell in nb.cells if tag in _tags(cell))
    return cell


def execute(folder: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The executed notebook, and the live cell's display updates in the order they came."""
    install(user=False, prefix=str(folder), kernel_name=KERNEL)  # a kernel of this Python
    os.environ["JUPYTER_PATH"] = str(folder / "share" / "jupyter")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(folder / "runtime")
    os.environ["IPYTHONDIR"] = str(folder / "ipython")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = RecordingClient(
        nb, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()  # raises if a cell does; the kernel is shut down either way
    return nb, client.updates


def halfway(updates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The update with a graph picture drawn nearest to half the nodes done."""
    best, best_distance = None, float("inf")
    for data in updates:
        html = data.get("text/html", "")
        drawn = re.search(r"(\d+) nodes: (\d+) done", html)  # the picture's header
        if "<svg" not in html or drawn is None:
            continue
        distance = abs(int(drawn[2]) / int(drawn[1]) - 0.5)
        if distance < best_distance:
            best, best_distance = data, distance
    return best


def outline(nb: Any) -> str:
    """Each code cell's first line and what it showed, one line each."""
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = []
        for output in cell.outputs:
            if output.output_type == "stream":
                shown.append(" / ".join(output.text.strip().splitlines()))
            elif output.output_type == "error":
                shown.append(f"{output.ename}: {output.evalue}")
            else:
                kinds = ",".join(sorted(output.data))
                text = output.data.get("text/plain", "").splitlines()[0]
                shown.append(f"{output.output_type} [{kinds}] {text}")
        first = cell.source.splitlines()[0]
        lines.append(f"[{','.join(_tags(cell))}] {first} -> {' | '.join(shown) or '(nothing)'}")
    return "\n".join(lines)


def notebook_html(nb: Any) -> str:
    """The notebook as JupyterLab's HTML, without its CDN scripts (MathJax, require.js): our
    outputs need none, and Chromium would wait for them on a machine without network."""
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return re.sub(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", "", body)


def only(html: str, tag: str, which: str) -> str:
    """The page with nothing shown but one output of the cell tagged ``tag``."""
    cell = f".jp-Cell.celltag_{tag}"  # nbconvert gives a cell a class per tag
    result = ".jp-OutputArea-executeResult"  # the value of the cell's last expression
    unwanted = result if which == "display" else f":not({result})"
    other = f"{cell} .jp-OutputArea-child{unwanted}"
    style = f"""<style>
      body {{ margin: 0 !important; padding: 12px !important; background: #fff !important; }}
      .jp-Notebook {{ padding: 0 !important; }}
      .jp-Cell {{ display: none !important; }}
      {cell} {{ display: block !important; padding: 0 !important; }}
      {cell} .jp-Cell-inputWrapper, {cell} .jp-OutputPrompt, {cell} .jp-Collapser,
      {other} {{ display: none !important; }}
    </style>"""
    return html.replace("</head>", style + "</head>", 1)


def chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = name and shutil.which(name)
        if found:
            return found
    return None


def screenshot(browser: str, page: Path, png: Path, height: int, profile: Path) -> None:
    """A PNG of ``page`` in a WIDTH x height window, cropped to what is not white."""
    from PIL import Image, ImageChops

    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",  # nothing written into the home directory
        f"--force-device-scale-factor={SCALE}",
        f"--window-size={WIDTH},{height}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    with Image.open(png) as shot:
        image = shot.convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is None:
        raise SystemExit(f"{png.name}: the screenshot is blank")
    margin = 8 * SCALE
    left, top, right, bottom = box
    if bottom >= image.height - 1:
        raise SystemExit(f"{png.name}: the output is taller than the {height}px window")
    image.crop((max(0, left - margin), max(0, top - margin), right + margin, bottom + margin)).save(
        png, optimize=True
    )


def main() -> int:
    under_test = "PYTEST_CURRENT_TEST" in os.environ
    with tempfile.TemporaryDirectory(prefix="aethergraph-pictures-") as tmp:
        work = Path(tmp)
        out = work / "img" if under_test else ROOT / "docs" / "img"
        out.mkdir(parents=True, exist_ok=True)
        browser = chromium()
        if browser is None and not under_test:
            raise SystemExit("no Chromium found: install it or set CHROMIUM=/path/to/chromium")
        start = time.monotonic()
        nb, updates = execute(work)
        print(f"executed {NOTEBOOK.relative_to(ROOT)} in {time.monotonic() - start:.1f} s:")
        print(outline(nb))
        middle = halfway(updates)
        if middle is not None:  # show the live cell as it looked half-way through its run
            (display,) = (o for o in _cell(nb, "live").outputs if o.output_type == "display_data")
            display.data = nbformat.from_dict(middle)
        html = notebook_html(nb)
        (work / "notebook.html").write_text(html)
        if browser is None:  # the test suite on a machine without Chromium: the rest was run
            print("no Chromium found: the notebook ran and converted, no screenshots taken")
            return 0
        for name, (tag, which) in PICTURES.items():
            page = work / f"{name}.html"
            page.write_text(only(html, tag, which))
            height = 2200 if tag == "picture" else 1400
            screenshot(browser, page, out / name, height, work / "chromium")
            print(f"wrote {out / name}")
        if under_test:
            print("(run by the test suite: written to a temporary folder, docs/img unchanged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
