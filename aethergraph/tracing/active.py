"""Which run (if any) the current code is tracing into.

A context variable, so concurrent graph bodies — tasks on one loop, or threads — each trace into
their own run, and code on the runtime thread (tools) never sees a body's run.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aethergraph.scheduling.scheduler import RunScheduler

active_run: contextvars.ContextVar[RunScheduler | None] = contextvars.ContextVar(
    "aethergraph_active_run", default=None
)
