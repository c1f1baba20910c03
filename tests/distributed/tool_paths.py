"""Where the distributed tests' tool modules are (workers import them by path).

A module of its own, not ``conftest``: with several test folders' conftests loaded at once
(``pytest tests/a tests/b``), ``from conftest import ...`` answers from whichever came last.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = str(HERE / "celery_tools.py")
CLIENT_TOOLS = str(HERE / "client_tools.py")
