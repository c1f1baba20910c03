"""Fixtures of the deployment-file tests (helpers: ops_support.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """A temporary directory removed after the test (pytest's tmp_path is kept for a while)."""
    path = Path(tempfile.mkdtemp(prefix="aethergraph-ops-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
