"""Garbage-collector pacing while graphs run.

A run of 10^4 to 10^5 nodes keeps a few long-lived objects per node (the TaskNode, its state, its
inputs and outputs). With CPython's default generation-0 threshold of 700 allocations the
collector then re-walks that growing heap over and over, which measured as a third of the
in-process scheduling cost. While at least one run is active we raise the generation-0 threshold
(``AETHERGRAPH_GC_THRESHOLD``, default 50 000; ``0`` leaves the collector alone) and restore the
previous thresholds when the last run ends. Collection still happens, just in larger steps.
"""

from __future__ import annotations

import gc
import threading

from aethergraph.settings import get_settings

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


def run_started() -> bool:
    """Count a run as active; returns whether it was counted (pass that to ``run_finished``,
    so a settings change between the two cannot unbalance the count)."""
    global _active, _saved
    threshold = get_settings().gc_threshold
    if not threshold:
        return False
    with _lock:
        _active += 1
        if _active == 1:
            current = gc.get_threshold()
            if current[0] and current[0] < threshold:
                _saved = current
                gc.set_threshold(threshold, *current[1:])
    return True


def run_finished(counted: bool = True) -> None:
    global _active, _saved
    if not counted:
        return
    with _lock:
        _active = max(_active - 1, 0)
        if _active == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
