"""A worker's side of tool code: shipped notebook tools, and tools edited since it started.

**Shipped tools** (``execution/shipping.py``): a worker started with ``--accept-code`` serves
the :data:`~aethergraph.execution.shipping.SHIPPED_TASK` task. A message of it names its tool's
code by digest; the worker reads those bytes from the broker once per process, checks the digest
and loads the tool. The last :data:`KEEP` loaded tools are kept, so a notebook session that
edits a tool a hundred times does not grow the worker for ever.

**Stale tools**: every other message carries the source digest of its tool as the client has
it (``src``). A worker whose own tool has another source — the tools module was edited after
the worker imported it — fails the node with :class:`~aethergraph.errors.ToolCodeError`
(``AETHERGRAPH_SOURCE_MISMATCH=fail``, a LocalCluster's setting) or runs it and warns once per
tool in its log (``warn``, the default: during a rolling upgrade of a pool, clients and workers
have different code for a while, on purpose).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis

from aethergraph.errors import ToolCodeError
from aethergraph.execution.shipping import SHIPPED_TASK, unpack_tool
from aethergraph.graph.tool_spec import ToolPolicy, ToolSpec
from aethergraph.keys import Keys

log = logging.getLogger("aethergraph.worker")

KEEP = 64  # loaded shipped tools kept per process


def _shipped_placeholder(**_: Any) -> None:
    """Stands for every shipped tool in the worker's task table; never called."""
    raise ToolCodeError("the shipped-code task ran without its tool's code")


def shipped_task_spec() -> ToolSpec:
    """The task a worker that accepts code registers for all shipped tools."""
    return ToolSpec(
        _shipped_placeholder, name=SHIPPED_TASK, version="1", outputs=None, policy=ToolPolicy()
    )


class ToolCode:
    """Resolves a message's tool: the shipped code it names, or the served tool, checked
    against the source the client has."""

    def __init__(
        self, keys: Keys, client: Callable[[], redis.Redis], *, mismatch: str = "warn"
    ) -> None:
        self._keys = keys
        self._client = client
        self._mismatch = mismatch
        self._loaded: OrderedDict[str, ToolSpec] = OrderedDict()
        self._warned: set[tuple[str, str]] = set()

    def resolve(self, spec: ToolSpec, meta: dict[str, Any]) -> ToolSpec:
        """The tool to run for a message of ``spec``'s task (raises ``ToolCodeError``)."""
        if spec.name == SHIPPED_TASK:
            return self._shipped(str(meta.get("code", "")))
        src = meta.get("src")
        if src and src != spec.source_digest:
            self._stale(spec, str(src))
        return spec

    def _shipped(self, digest: str) -> ToolSpec:
        loaded = self._loaded.get(digest)
        if loaded is not None:
            self._loaded.move_to_end(digest)
            return loaded
        if not digest:
            raise ToolCodeError("a shipped-code message names no code digest")
        blob = self._client().get(self._keys.shipped_code(digest))
        if blob is None:
            raise ToolCodeError(
                f"the code {digest} this node's tool was shipped as is not in the broker (it "
                "expired, or the broker lost it in a restart): run the graph again, which "
                "ships it again"
            )
        if not isinstance(blob, bytes):  # a client that decodes replies: not the pusher's
            raise ToolCodeError(f"the shipped code {digest} was read as text, not bytes")
        loaded = unpack_tool(blob, digest)
        self._loaded[digest] = loaded
        if len(self._loaded) > KEEP:
            self._loaded.popitem(last=False)
        return loaded

    def _stale(self, spec: ToolSpec, src: str) -> None:
        what = (
            f"tool {spec.name!r} has another source here than in the client that sent this "
            f"node (worker {spec.source_digest}, client {src}): its code was edited after this "
            "worker imported it"
        )
        if self._mismatch == "fail":
            raise ToolCodeError(
                f"{what}; restart the workers to load the new code (cluster.restart() on a "
                "LocalCluster; a rolling restart of a pool: docs/operations.md)"
            )
        if (spec.name, src) not in self._warned:
            self._warned.add((spec.name, src))
            log.warning("%s; running the worker's version (AETHERGRAPH_SOURCE_MISMATCH=warn)", what)
