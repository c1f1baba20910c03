"""The chaos suite's tool: records each execution in a file, so a Redis restart cannot erase it."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aethergraph import tool


def _record(log: str, **fields: Any) -> None:
    line = json.dumps({**fields, "pid": os.getpid(), "t": time.time()}) + "\n"
    with open(log, "a", encoding="utf-8") as f:  # one short O_APPEND write: never interleaved
        f.write(line)


@tool(outputs=["y"])
def chaos_step(log: str, i: int, seconds: float) -> dict[str, Any]:
    """Records its start and end around a sleep of ``seconds``; returns ``2 * i``."""
    _record(log, ev="start", i=i)
    time.sleep(seconds)
    _record(log, ev="end", i=i)
    return {"y": 2 * i}
