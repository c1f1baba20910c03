"""The executors every conformance test runs against.

Each entry builds a fresh executor. The Celery executor joins this list when it exists; every test
in this package must pass on every executor.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aethergraph.execution.base import Executor
from aethergraph.execution.local import LocalExecutor

EXECUTORS: dict[str, Callable[[], Executor]] = {
    "local-threads": lambda: LocalExecutor(sync_tools="thread"),
    "local-inline": lambda: LocalExecutor(sync_tools="inline"),
}


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Executor:
    return EXECUTORS[request.param]()
