"""``context.channel()``: messages from a running node to whoever watches the run.

A :class:`Channel` is bound to one node and stamps every message with its run / graph / node ids;
the process-wide :class:`ChannelBackend` decides where messages go (console, nowhere, a list, or a
shared bus in a distributed deployment). Payloads stay JSON-compatible so any backend can ship them.
A bad argument (empty kind, a payload that is not JSON, negative progress) raises
:class:`~aethergraph.errors.ServiceUsageError` before any backend sees the message.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, TextIO

from aethergraph.errors import ServiceUsageError

KINDS: tuple[str, ...] = ("text", "json", "progress", "file")


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """One message sent by a node; immutable so backends can share it across threads."""

    run_id: str
    graph_id: str
    node_id: str
    kind: str
    payload: Any
    ts: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict, the wire form used by non-local backends."""
        return {
            "run_id": self.run_id,
            "graph_id": self.graph_id,
            "node_id": self.node_id,
            "kind": self.kind,
            "payload": self.payload,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelMessage:
        """Rebuild a message from :meth:`to_dict` output."""
        return cls(
            run_id=str(data["run_id"]),
            graph_id=str(data["graph_id"]),
            node_id=str(data["node_id"]),
            kind=str(data["kind"]),
            payload=data.get("payload"),
            ts=float(data["ts"]),
        )


class ChannelBackend(ABC):
    """Process-wide sink for channel messages of every node."""

    @abstractmethod
    async def publish(self, message: ChannelMessage) -> None:
        """Deliver one message; must not block the event loop for long."""


def format_message(message: ChannelMessage) -> str:
    """One human-readable line for ``message`` (no trailing newline)."""
    prefix = f"[{message.graph_id}/{message.node_id}]"
    payload = message.payload
    if message.kind == "text":
        return f"{prefix} {payload}"
    if message.kind == "progress" and isinstance(payload, dict):
        current = _fmt_number(payload.get("current", 0))
        total = payload.get("total")
        text = f"{prefix} progress {current}"
        if isinstance(total, int | float) and total:
            text += f"/{_fmt_number(total)} ({payload.get('current', 0) / total:.0%})"
        if payload.get("message"):
            text += f" {payload['message']}"
        return text
    if message.kind == "file" and isinstance(payload, dict):
        text = f"{prefix} file {payload.get('uri')}"
        return f"{text} {payload['name']}" if payload.get("name") else text
    dumped = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
    return f"{prefix} {dumped}" if message.kind == "json" else f"{prefix} {message.kind} {dumped}"


def _fmt_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ConsoleChannelBackend(ChannelBackend):
    """Prints one line per message; the default so notebooks and scripts see progress."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # None means "sys.stdout at write time", so redirections (pytest capsys) are honoured.
        self._stream = stream
        self._lock = threading.Lock()

    async def publish(self, message: ChannelMessage) -> None:
        line = format_message(message) + "\n"
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            stream.write(line)
            stream.flush()


class NullChannelBackend(ChannelBackend):
    """Drops every message (for quiet batch runs)."""

    async def publish(self, message: ChannelMessage) -> None:
        return None


class RecordingChannelBackend(ChannelBackend):
    """Keeps every message in :attr:`messages`, for tests and notebooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[ChannelMessage] = []

    @property
    def messages(self) -> list[ChannelMessage]:
        """A copy of the messages seen so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget the recorded messages."""
        with self._lock:
            self._messages.clear()

    async def publish(self, message: ChannelMessage) -> None:
        with self._lock:
            self._messages.append(message)


class Channel:
    """What ``context.channel()`` returns: a node-bound handle on the channel backend."""

    def __init__(
        self, backend: ChannelBackend, *, run_id: str, graph_id: str, node_id: str
    ) -> None:
        self._backend = backend
        self.run_id = run_id
        self.graph_id = graph_id
        self.node_id = node_id

    async def send(self, kind: str, payload: Any) -> ChannelMessage:
        """Publish a message of any ``kind`` with a JSON-compatible ``payload``."""
        if not isinstance(kind, str) or not kind:
            raise ServiceUsageError(
                f"channel().send() needs a non-empty str kind, got {kind!r}; "
                f"use one of {', '.join(KINDS)} or a custom name."
            )
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ServiceUsageError(
                f"channel().send({kind!r}, ...) payload of type {type(payload).__name__} is not "
                f"JSON-compatible ({exc}); send plain dicts/lists/str/numbers, or save the data "
                "with context.artifacts() and send_file() its URI."
            ) from exc
        message = ChannelMessage(
            run_id=self.run_id,
            graph_id=self.graph_id,
            node_id=self.node_id,
            kind=kind,
            payload=payload,
            ts=time.time(),
        )
        await self._backend.publish(message)
        return message

    async def send_text(self, text: str) -> ChannelMessage:
        """Send a line of text."""
        if not isinstance(text, str):
            raise ServiceUsageError(
                f"channel().send_text() takes a str, got {type(text).__name__}; "
                "use send_json() for structured data or str(...) to format it first."
            )
        return await self.send("text", text)

    async def send_json(self, data: Any) -> ChannelMessage:
        """Send structured JSON-compatible data."""
        return await self.send("json", data)

    async def send_progress(
        self, current: float, total: float | None = None, message: str = ""
    ) -> ChannelMessage:
        """Report progress as ``current`` out of ``total`` (total may be unknown)."""
        for label, value in (("current", current), ("total", total)):
            if value is None and label == "total":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ServiceUsageError(
                    f"channel().send_progress() {label} must be a number, "
                    f"got {type(value).__name__}."
                )
            if not math.isfinite(value) or value < 0:
                raise ServiceUsageError(
                    f"channel().send_progress() {label} must be a finite number >= 0, "
                    f"got {value!r}."
                )
        if total is not None and total == 0 and current:
            raise ServiceUsageError(
                "channel().send_progress() total must be > 0 when current is not 0; "
                "pass total=None when the total is unknown."
            )
        if not isinstance(message, str):
            raise ServiceUsageError(
                f"channel().send_progress() message must be a str, got {type(message).__name__}."
            )
        payload = {"current": current, "total": total, "message": message}
        return await self.send("progress", payload)

    async def send_file(self, uri: str, name: str | None = None) -> ChannelMessage:
        """Point watchers at a file, usually an ``artifact://`` URI from ``artifacts()``."""
        if not isinstance(uri, str) or not uri:
            raise ServiceUsageError(
                f"channel().send_file() needs a non-empty str uri, got {uri!r}; "
                "save the file with context.artifacts().save_file(path) and send its URI."
            )
        if name is not None and not isinstance(name, str):
            raise ServiceUsageError(
                f"channel().send_file() name must be a str or None, got {type(name).__name__}."
            )
        return await self.send("file", {"uri": uri, "name": name})


__all__ = [
    "KINDS",
    "Channel",
    "ChannelBackend",
    "ChannelMessage",
    "ConsoleChannelBackend",
    "NullChannelBackend",
    "RecordingChannelBackend",
    "format_message",
]
