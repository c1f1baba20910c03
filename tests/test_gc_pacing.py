"""While a run is active the generation-0 GC threshold is raised, and restored afterwards."""

from __future__ import annotations

import gc
from typing import Any

from aethergraph import graph_fn, run
from aethergraph.settings import get_settings


def test_threshold_raised_during_run_and_restored() -> None:
    before = gc.get_threshold()
    seen: list[int] = []

    @graph_fn(name="gcp_probe")
    async def probe() -> Any:
        seen.append(gc.get_threshold()[0])
        return {}

    run(probe)
    assert seen == [max(before[0], get_settings().gc_threshold)]
    assert gc.get_threshold() == before
