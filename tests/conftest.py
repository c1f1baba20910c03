"""Shared test setup: an isolated artifact store and a clean service registry per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Before anything reads settings: keep artifacts out of the user's home directory.
os.environ.setdefault(
    "AETHERGRAPH_ARTIFACTS_DIR", tempfile.mkdtemp(prefix="aethergraph-test-artifacts-")
)

from aethergraph.services.runtime.registry import current_services


@pytest.fixture(autouse=True)
def _clean_services() -> Iterator[None]:
    """Unregister (and close) custom services a test registered."""
    services = current_services()
    before = set(services.names())
    yield
    for name in set(services.names()) - before:
        services.unregister(name)
    services.serving = False
