"""Bad messages are set aside, never fatal: the worker's Redis transport, guarded.

kombu's Redis transport pops a message with ``BRPOP`` and then decodes it: the list item as
JSON, the body as base64, then Celery unpacks ``[args, kwargs, embed]``. An item that fails any
of these steps raised out of the consumer and stopped the worker — with exit code 0, so a
``Restart=on-failure`` service did not restart it — and a body that was not Celery's triple had
already been recorded as unacknowledged, so it came back and stopped the next worker too.

:class:`GuardedTransport` is the Redis transport with that one step guarded. A message that
cannot be decoded or taken apart is *dead-lettered*: pushed, with the reason and its queue, to
the capped list ``Keys.dead_letters()`` (newest first, the last :data:`KEEP` entries, expiring
after :data:`TTL` seconds without a new one), removed from the unacknowledged set, and logged as
a warning. The worker carries on with the next message. Nothing in a bad message is imported or
run: decoding is JSON and base64 only.

The worker runtime selects this transport for ``redis://`` and ``rediss://`` brokers, and its
Sentinel twin for ``sentinel://`` ones (``broker_transport``); clients keep kombu's own.
"""

from __future__ import annotations

import binascii
import json
import logging
import time
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads

log = logging.getLogger("aethergraph.worker")

#: the transport option naming the dead-letter list (set by the worker runtime)
OPTION = "aethergraph_dead_letters"
KEEP = 1000  # dead letters kept
TTL = 7 * 24 * 3600  # seconds the list lives after its last entry
_SHOWN = 65536  # characters of a bad item kept in its dead letter

#: what decoding or unpacking a malformed message raises (JSONDecodeError is a ValueError)
BAD_MESSAGE_ERRORS = (ValueError, TypeError, KeyError, IndexError, binascii.Error)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel, whose ``BRPOP`` read dead-letters what it cannot deliver."""

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's own read (kombu.transport.redis.Channel._brpop_read), with the decode and
        # the delivery guarded: the item is already popped, so a failure must not lose it.
        try:
            try:
                dest_item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest_item:
                raise Empty()
            dest, item = dest_item
            dest = _text(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            text = _text(item)
            try:
                payload = loads(text)  # type: ignore[no-untyped-call]  # kombu's, untyped
            except ValueError as exc:
                self._dead_letter(dest, text, None, f"not JSON: {exc}")
                return True
            try:
                self.connection._deliver(payload, dest)
            except BAD_MESSAGE_ERRORS as exc:
                self._dead_letter(dest, text, payload, f"{type(exc).__name__}: {exc}")
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # as kombu's own read does
            flush = getattr(self, "_flush_brpop_reauth", None)  # newer kombu releases
            if flush is not None:
                flush()

    def _dead_letter(self, queue: str, text: str, payload: Any, reason: str) -> None:
        tag = None
        if isinstance(payload, dict) and isinstance(payload.get("properties"), dict):
            tag = payload["properties"].get("delivery_tag")
        if tag is not None and tag in self.qos._delivered:  # recorded as unacked: never acked
            try:
                self.qos.ack(tag)
            except Exception:
                log.warning(
                    "could not drop bad message %s from the unacked set", tag, exc_info=True
                )
        log.warning(
            "rejected a bad message from queue %s (%s); it is kept in the dead-letter list",
            queue,
            reason,
        )
        key = self.connection.client.transport_options.get(OPTION)
        if not key:
            return
        letter = json.dumps(
            {"queue": queue, "reason": reason, "at": time.time(), "message": text[:_SHOWN]}
        )
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                pipe.lpush(key, letter).ltrim(key, 0, KEEP - 1).expire(key, TTL)
                pipe.execute()
        except Exception:
            log.warning("could not store a dead letter in %s", key, exc_info=True)


class GuardedTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`GuardedChannel`."""

    Channel = GuardedChannel


class GuardedSentinelChannel(GuardedChannel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (the master found through Sentinels), guarded the same way."""


class GuardedSentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`GuardedSentinelChannel`."""

    Channel = GuardedSentinelChannel


TRANSPORT = f"{__name__}:GuardedTransport"
SENTINEL_TRANSPORT = f"{__name__}:GuardedSentinelTransport"
