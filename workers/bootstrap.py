"""Example service bootstrap for a worker pool: ``aethergraph worker --services bootstrap:setup``.

Copied into the worker image next to the tools (``workers/Dockerfile``); it is an example, not
part of the ``aethergraph`` package, and nothing installs it as one. Every worker process calls
``setup()`` once (prefork: in each pool child as it starts; threads/solo: once per worker), then
``start()`` on each registered service; ``close()`` runs when that process stops. See
docs/services.md and docs/distributed.md#services-on-workers.

The service here is the kind a pool typically needs: per-process state opened once and reused by
every node — a scratch directory on local disk (``WORKER_SCRATCH_DIR``, default the system's
temporary directory), named after the process so pool children never collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from aethergraph import Service, register_context_service


class Scratch(Service):
    """``context.scratch()``: a private working directory of this worker process."""

    def __init__(self, root: str | None = None) -> None:
        super().__init__()
        self.root = Path(root or os.environ.get("WORKER_SCRATCH_DIR") or tempfile.gettempdir())
        self.dir: Path | None = None

    async def start(self) -> None:  # once per worker process, before its first node
        self.root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"ag-{os.getpid()}-", dir=self.root))

    async def close(self) -> None:  # when the process stops (also after SIGTERM's grace)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def path(self, name: str) -> Path:
        """A path inside this process's scratch directory (``name`` must be a plain file name)."""
        if self.dir is None:
            raise RuntimeError("the scratch service is not started")
        if not name or Path(name).name != name:
            raise ValueError(f"not a plain file name: {name!r}")
        return self.dir / name

    def where(self) -> str:
        """``host:pid``: which worker process served a node."""
        return f"{socket.gethostname()}:{os.getpid()}"


def setup() -> None:
    """Register this pool's services (``--services bootstrap:setup``)."""
    register_context_service("scratch", Scratch())
