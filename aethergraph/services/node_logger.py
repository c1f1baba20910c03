"""``context.logger()``: stdlib logging tagged with the run, graph and node ids."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

LOGGER_NAME = "aethergraph.node"


class NodeLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A LoggerAdapter that *merges* the caller's ``extra`` with the node ids.

    The stdlib adapter replaces a call's ``extra`` with its own; the seed API shows
    ``context.logger().info("scaled", extra={"y": y})``, so both must survive. Every record gets
    ``run_id``, ``graph_id`` and ``node_id`` attributes, usable in formatters and filters.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def node_logger(run_id: str, graph_id: str, node_id: str) -> NodeLoggerAdapter:
    """A logger for one node (cheap: the underlying stdlib logger is shared)."""
    return NodeLoggerAdapter(
        logging.getLogger(LOGGER_NAME),
        {"run_id": run_id, "graph_id": graph_id, "node_id": node_id},
    )
