"""``cluster.adapt(minimum, maximum)``: a thread that sizes a batch-system cluster by demand.

Every ``interval`` seconds it asks the cluster for its demand — pool slots wanted now — and
turns it into jobs: ``ceil(demand / slots per job)``, clamped to ``[minimum, maximum]``. It
scales up at once (a job waiting in the batch queue counts as capacity, so it never submits
twice for the same demand) and down only once the lower target has held for ``cooldown``
seconds, so a pool does not flap between the nodes of one graph and the next.

Demand (``JobQueueCluster.demand``) is the larger of: the messages in the queues the workers
serve plus the messages live workers hold, and the nodes in flight of the namespace's live runs
— the latter sees nodes that wait in their client because no worker serves their tool yet,
which is every node when the pool is at zero.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from aethergraph.errors import ConfigurationError

log = logging.getLogger("aethergraph")


class Adaptive:
    """The sizing loop (a daemon thread) of one cluster."""

    def __init__(
        self,
        *,
        demand: Callable[[], int],
        active: Callable[[], int],
        scale: Callable[[int], None],
        slots_per_job: int,
        minimum: int,
        maximum: int,
        interval: float,
        cooldown: float,
    ) -> None:
        for name, value in (("minimum", minimum), ("maximum", maximum)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"adapt({name}=...) must be an int >= 0, got {value!r}")
        if maximum < minimum or maximum < 1:
            raise ConfigurationError(
                f"adapt(minimum={minimum}, maximum={maximum}): maximum must be >= minimum and >= 1"
            )
        for name, seconds in (("interval", interval), ("cooldown", cooldown)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ConfigurationError(f"adapt({name}=...) must be seconds >= 0, got {seconds!r}")
        if interval <= 0:
            raise ConfigurationError(f"adapt(interval=...) must be > 0 seconds, got {interval!r}")
        self._demand = demand
        self._active = active
        self._scale = scale
        self.slots_per_job = slots_per_job
        self.minimum = minimum
        self.maximum = maximum
        self.interval = float(interval)
        self.cooldown = float(cooldown)
        self._stop = threading.Event()
        self._lower_since: float | None = None  # when the target first fell below the jobs
        self._thread = threading.Thread(target=self._run, name="aethergraph-adapt", daemon=True)

    def start(self) -> Adaptive:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(60)

    def target(self, demand: int) -> int:
        """The number of jobs ``demand`` slots ask for, within ``[minimum, maximum]``."""
        wanted = math.ceil(demand / self.slots_per_job) if demand > 0 else 0
        return max(self.minimum, min(self.maximum, wanted))

    def step(self) -> None:
        """One sizing decision (the loop's body; tests may call it directly)."""
        target = self.target(self._demand())
        jobs = self._active()
        if target > jobs:
            self._lower_since = None
            log.info("adapt: %d slot(s) wanted: %d -> %d job(s)", target, jobs, target)
            self._scale(target)
        elif target < jobs:
            now = time.monotonic()
            if self._lower_since is None:
                self._lower_since = now
            if now - self._lower_since >= self.cooldown:
                log.info("adapt: demand fell: %d -> %d job(s)", jobs, target)
                self._scale(target)
                self._lower_since = None
        else:
            self._lower_since = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a broker or batch-system hiccup: try again next time
                log.warning("adapt: sizing the cluster failed; retrying", exc_info=True)
            self._stop.wait(self.interval)

    def __repr__(self) -> str:
        return f"<Adaptive minimum={self.minimum} maximum={self.maximum}>"
