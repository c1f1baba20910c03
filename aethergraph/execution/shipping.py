"""Shipping a tool's code from a notebook to workers: the format both sides share.

A tool defined in a notebook cell (or in a script's ``__main__``) has no module a worker could
import. Dask's answer is ours: the client serializes the function with **cloudpickle** — which
pickles ``__main__`` functions *by value*, with the globals they use (helper functions,
constants) and imported modules *by reference* — and the worker loads it. The alternatives were
worse: shipping source text breaks on every helper or constant from another cell, and restarting
workers with a generated module file costs seconds per edit.

What keeps it safe:

* **Never in a message.** Messages stay JSON (``wire.py``). The code goes to the broker once,
  content-addressed (``Keys.shipped_code(digest)``, a SHA-256 of the bytes), and a message names
  it by digest; a worker checks the digest of what it reads before it unpickles anything.
* **Opt-in on both ends.** Clients ship only with ``AETHERGRAPH_SHIP_CODE`` (a ``LocalCluster``
  with its own Redis — loopback, a random password — sets it) and workers accept only with
  ``--accept-code`` / ``AETHERGRAPH_ACCEPT_CODE``. Whoever can write to the broker can run code on
  such workers, so on a shared broker both are explicit choices (docs/notebooks.md).

Shipped nodes travel as the Celery task :data:`SHIPPED_TASK` with the tool's name as the
message's *shadow* name: Celery's events, its worker log and Flower show the tool's name.
Re-running an edited cell makes a new function, so new bytes and a new digest: a worker never
runs a stale copy of shipped code. The client pickles each tool again for every run, so an
edited helper that the tool calls is picked up as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import cloudpickle

from aethergraph.errors import ToolCodeError
from aethergraph.graph.tool_spec import ToolPolicy, ToolSpec

#: the Celery task that runs shipped tools (registered by workers that accept code)
SHIPPED_TASK = "aethergraph.shipped"

#: how long shipped code stays in the broker after a run last sent it (seconds)
CODE_TTL = 24 * 3600.0

FORMAT = 1


def digest_of(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def pack_tool(spec: ToolSpec) -> bytes:
    """The tool's function and options as cloudpickle bytes (a clear error if it cannot be)."""
    payload = {
        "format": FORMAT,
        "fn": spec.fn,
        "name": spec.name,
        "version": spec.version,
        "outputs": spec.outputs,
        "policy": dataclasses.asdict(spec.policy),
        # the client's: a worker has no notebook cell to read the source from
        "source_digest": spec.source_digest,
    }
    try:
        blob: bytes = cloudpickle.dumps(payload)
        return blob
    except Exception as exc:
        raise ToolCodeError(
            f"tool {spec.name!r} is defined in the notebook (__main__) and cannot be sent to the "
            f"workers: cloudpickle failed: {type(exc).__name__}: {exc}. It usually means the "
            "tool uses a global that cannot be pickled (an open file, a lock, a client): create "
            "it inside the tool, or move the tool to a module and start workers with --tools"
        ) from exc


def unpack_tool(blob: bytes, digest: str) -> ToolSpec:
    """The tool shipped as ``blob``, checked against ``digest`` before it is unpickled."""
    if digest_of(blob) != digest:
        raise ToolCodeError(
            f"the shipped code {digest} in the broker does not match its digest; it was "
            "overwritten or corrupted: run the graph again"
        )
    try:
        payload = cloudpickle.loads(blob)
        spec = ToolSpec(
            payload["fn"],
            name=payload["name"],
            version=payload["version"],
            outputs=payload["outputs"],
            policy=ToolPolicy(**payload["policy"]),
        )
        spec.source_digest = payload["source_digest"]
        return spec
    except Exception as exc:
        raise ToolCodeError(
            f"a worker could not load the code shipped from the notebook ({type(exc).__name__}: "
            f"{exc}). The worker needs the modules the tool imports, in versions compatible "
            "with the notebook's (same Python, same cloudpickle)"
        ) from exc


class CodeShipper:
    """The client's side: each notebook tool's bytes and digest, pickled once per run, and
    which digests still need to be written to the broker."""

    def __init__(self, ttl: float = CODE_TTL) -> None:
        self.ttl = ttl
        self._packed: dict[int, tuple[ToolSpec, str, bytes]] = {}  # id(spec) -> packed
        self._written: dict[str, float] = {}  # digest -> when it was last written

    def new_run(self) -> None:
        """Pickle again from now on: a helper the tool calls may have been edited since.
        (A new dict, not ``clear()``: runs start on other threads than the dispatcher's.)"""
        self._packed = {}

    def digest(self, spec: ToolSpec) -> str:
        """The digest the tool's messages name (pickles it on first use in a run)."""
        packed = self._packed.get(id(spec))
        if packed is None or packed[0] is not spec:
            blob = pack_tool(spec)
            packed = self._packed[id(spec)] = (spec, digest_of(blob), blob)
        return packed[1]

    def uploads(self, digests: set[str]) -> list[tuple[str, bytes]]:
        """``(digest, bytes)`` to write before messages naming ``digests`` are sent: those
        not written yet, or written long enough ago that their TTL may run out."""
        now = time.monotonic()
        blobs = {digest: blob for _, digest, blob in list(self._packed.values())}
        due = []
        for digest in digests:
            written = self._written.get(digest)
            if (written is None or now - written > self.ttl / 2) and digest in blobs:
                due.append((digest, blobs[digest]))
                self._written[digest] = now
        return due

    def forget_written(self, digests: list[str]) -> None:
        """A publish failed: write these again with the next one."""
        for digest in digests:
            self._written.pop(digest, None)
