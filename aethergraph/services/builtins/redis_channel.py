"""Live channel messages over Redis Pub/Sub: workers publish, the submitting client listens.

A node running on a worker calls ``context.channel().send_text(...)``; the worker's
:class:`RedisChannelBackend` publishes the message on the run's channel
(``keys.run_channel(run_id)``) and the client that submitted the run, holding a
:class:`RunEventSubscriber` for it, gets a callback as the message arrives. Pub/Sub keeps nothing:
a message published while nobody listens is dropped, which is what progress output wants and
what keeps publishing cheap.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import redis.asyncio
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from aethergraph.errors import (
    ConfigurationError,
    RuntimeUsageError,
    ServiceError,
    ServiceUsageError,
)
from aethergraph.keys import Keys
from aethergraph.redis_clients import async_client
from aethergraph.services.builtins.channel import ChannelBackend, ChannelMessage
from aethergraph.services.builtins.redis_backends import (
    RedisService,
    check_keys,
    check_redis_url,
    closed_transport_is_a_connection_error,
    positive_number,
    redact_url,
)

logger = logging.getLogger(__name__)

OnMessage = Callable[[ChannelMessage], Awaitable[None] | None]
_WARN_EVERY = 30.0  # seconds between repeated "cannot publish" warnings
_MAX_BACKOFF = 5.0


class RedisChannelBackend(RedisService, ChannelBackend):
    """Publishes every channel message on its run's Redis channel.

    A tool must never fail because its progress output could not be delivered: Redis errors and
    slow publishes (over ``timeout`` seconds) are logged, at most every 30 s, and dropped.
    """

    def __init__(self, url: str, keys: Keys, *, timeout: float = 2.0) -> None:
        super().__init__(url, keys)
        self.timeout = positive_number(type(self).__name__, "timeout", timeout)
        self._last_warning = -_WARN_EVERY

    async def publish(self, message: ChannelMessage) -> None:
        try:
            payload = json.dumps(message.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ServiceUsageError(
                f"channel message payload of type {type(message.payload).__name__} is not "
                f"JSON-compatible ({exc}); send plain dicts/lists/str/numbers."
            ) from exc
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._redis()
                await client.publish(self.keys.run_channel(message.run_id), payload)
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            level = logging.WARNING if now - self._last_warning >= _WARN_EVERY else logging.DEBUG
            if level == logging.WARNING:
                self._last_warning = now
            text = "dropped a channel message of run %s (Redis %s): %r"
            logger.log(level, text, message.run_id, self.url, exc)

    def subscriber(self, on_message: OnMessage, *, runs: Iterable[str] = ()) -> RunEventSubscriber:
        """A :class:`RunEventSubscriber` on the same Redis and namespace."""
        return RunEventSubscriber(self._clients.url, self.keys, on_message, runs=runs)


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise ServiceUsageError(f"run ids are non-empty str, got {run_id!r}.")
    return run_id


class RunEventSubscriber:
    """Calls ``on_message`` for each channel message of the runs it follows, as they arrive.

    Usage::

        async with RunEventSubscriber(url, keys, on_message, runs=[run_id]) as events:
            ...                           # submit, wait; messages arrive meanwhile
            await events.add_run(other)   # follow another run too

    One background task reads the Pub/Sub connection and calls ``on_message`` (sync or async) for
    one message at a time, so messages of a run arrive in publish order; a slow callback delays the
    following ones. Callback exceptions are logged, never propagated. :meth:`add_run` returns once
    Redis confirms the subscription, so nothing published afterwards is missed; after
    :meth:`remove_run` the run's messages are no longer delivered. Lost connections are retried
    and the subscriptions restored. The subscriber is bound to the event loop that called
    :meth:`start`.
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        on_message: OnMessage,
        *,
        runs: Iterable[str] = (),
        confirm_timeout: float = 10.0,
    ) -> None:
        if not callable(on_message):
            raise ConfigurationError(
                f"RunEventSubscriber(on_message=...) must be callable, got {on_message!r}."
            )
        self._url = check_redis_url(url)
        self.keys = check_keys(keys)
        self._on_message = on_message
        self._confirm_timeout = positive_number(
            type(self).__name__, "confirm_timeout", confirm_timeout
        )
        self._runs: dict[bytes, str] = {}  # channel -> run id, for every run being followed
        for run_id in runs:
            self._runs[self._channel(run_id)] = run_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: redis.asyncio.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[tuple[str, bytes], asyncio.Future[None]] = {}
        self._closed = False

    def _channel(self, run_id: str) -> bytes:
        return self.keys.run_channel(_check_run_id(run_id)).encode()

    @property
    def runs(self) -> list[str]:
        """The run ids currently followed."""
        return list(self._runs.values())

    def _check_loop(self) -> None:
        if self._closed:
            raise RuntimeUsageError("this RunEventSubscriber was closed; create a new one.")
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise RuntimeUsageError(
                "a RunEventSubscriber is bound to the event loop that started it; "
                "create one per event loop."
            )

    async def start(self) -> None:
        """Connect, start the reader task and subscribe to the runs given so far.

        If this fails (Redis unreachable, no confirmation) the subscriber is closed.
        """
        self._check_loop()
        if self._reader is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._client = async_client(self._url, decode_responses=False)
        self._pubsub = self._client.pubsub()
        try:
            await self._pubsub.connect()  # type: ignore[no-untyped-call]  # unannotated upstream
            self._reader = asyncio.create_task(self._read_loop(), name="aethergraph-run-events")
            if self._runs:
                await self._send("subscribe", list(self._runs))
        except BaseException:
            await self.close()  # half-started: release everything (the caller gets no handle)
            raise

    async def add_run(self, run_id: str) -> None:
        """Follow ``run_id``; once this returns, every message published for it is delivered."""
        self._check_loop()
        channel = self._channel(run_id)
        if channel in self._runs:
            pending = self._waiters.get(("subscribe", channel))
            if pending is not None:  # a concurrent add_run is still waiting for Redis
                await self._confirmed("subscribe", [pending])
            return
        self._runs[channel] = run_id
        if self._reader is not None:
            await self._send("subscribe", [channel])

    async def remove_run(self, run_id: str) -> None:
        """Stop following ``run_id``: none of its messages is delivered after this call."""
        self._check_loop()
        channel = self._channel(run_id)
        if self._runs.pop(channel, None) is None or self._reader is None:
            return
        try:
            await self._send("unsubscribe", [channel])
        except ServiceError as exc:  # delivery already stops locally; the server catches up
            logger.debug("%s", exc)

    async def _send(self, command: str, channels: list[bytes]) -> None:
        """Send (UN)SUBSCRIBE and wait until the reader sees Redis confirm every channel."""
        assert self._pubsub is not None
        assert self._loop is not None
        waiters = []
        for channel in channels:
            waiter = self._waiters.get((command, channel))
            if waiter is None:
                waiter = self._waiters[command, channel] = self._loop.create_future()
            waiters.append(waiter)
        with closed_transport_is_a_connection_error():
            if command == "subscribe":
                await self._pubsub.subscribe(*channels)
            else:
                await self._pubsub.unsubscribe(*channels)
        await self._confirmed(command, waiters)

    async def _confirmed(self, command: str, waiters: list[asyncio.Future[None]]) -> None:
        # shield: a timeout here must not cancel futures other callers may be waiting on.
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await asyncio.gather(*map(asyncio.shield, waiters))
        except TimeoutError:
            raise ServiceError(
                f"Redis at {redact_url(self._url)} did not confirm {command} of "
                f"{len(waiters)} run channel(s) within {self._confirm_timeout:g}s."
            ) from None

    async def _read_loop(self) -> None:
        assert self._pubsub is not None
        backoff = 0.1
        while True:
            try:
                raw = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                # redis-py already retried; wait a little, then reconnect (which resubscribes).
                logger.warning("run event subscriber lost Redis %s: %r", redact_url(self._url), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.1
            if raw is None:
                continue
            try:
                await self._dispatch(raw)
            except Exception:  # keep reading whatever one message did
                logger.exception("RunEventSubscriber failed to handle %r", raw)

    async def _dispatch(self, raw: dict[str, Any]) -> None:
        kind, channel = raw.get("type"), raw.get("channel")
        if not isinstance(channel, bytes):
            return
        if kind in ("subscribe", "unsubscribe"):
            waiter = self._waiters.pop((kind, channel), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if kind != "message" or channel not in self._runs:
            return  # e.g. a message still in flight for a run removed meanwhile
        try:
            message = ChannelMessage.from_dict(json.loads(raw["data"]))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed message on %r: %r", channel, exc)
            return
        try:
            result = self._on_message(message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("RunEventSubscriber on_message callback failed for %r", message)

    async def close(self) -> None:
        """Stop the reader, drop the subscriptions and close the connection (idempotent)."""
        if self._closed:
            return
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise RuntimeUsageError("close a RunEventSubscriber on the event loop that started it.")
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])  # never raises, unlike awaiting the task
            self._reader = None
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
        await self._release()

    async def _release(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated upstream
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> RunEventSubscriber:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = ["OnMessage", "RedisChannelBackend", "RunEventSubscriber"]
