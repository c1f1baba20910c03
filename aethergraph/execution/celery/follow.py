"""Following runs over Pub/Sub: channel messages and logs that tools emit on workers, here.

A run is followed (subscribed to its ``Keys.run_channel``) while at least one of its nodes is in
flight, reference counted per node; when the last one settles the subscription is dropped a
little later, since live messages can trail a node's result. Messages are replayed into *this
process's* channel backend and logger: the follower reads the process's service registry and
never changes it.

A subscription that Redis does not confirm in time is not fatal: the nodes are published anyway
(their results travel separately), a warning says the run's live messages may be missed, and the
next batch of that run tries to subscribe again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from aethergraph.errors import ServiceError
from aethergraph.execution.celery.background import Background
from aethergraph.keys import Keys
from aethergraph.services.builtins.channel import ChannelMessage
from aethergraph.services.node_logger import node_logger
from aethergraph.services.runtime.registry import current_services

log = logging.getLogger("aethergraph")

UNFOLLOW_DELAY = 2.0  # seconds a run stays subscribed after its last node settled


class Follower:
    """Reference-counted Pub/Sub subscriptions to the runs with nodes in flight."""

    def __init__(self, url: str, keys: Keys, background: Background) -> None:
        self._url = url
        self._keys = keys
        self._background = background
        self._subscriber: Any = None  # RunEventSubscriber, imported lazily (start-up cost)
        self._held: dict[str, int] = {}  # run id -> nodes in flight
        self._subscribed: set[str] = set()

    async def start(self) -> None:
        from aethergraph.services.builtins.redis_channel import RunEventSubscriber

        self._subscriber = RunEventSubscriber(self._url, self._keys, self._replay)
        await self._subscriber.start()

    async def close(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        self._subscribed.clear()
        if subscriber is not None:
            await subscriber.close()

    async def subscribe(self, run_id: str) -> None:
        """Make sure the run's live messages reach this process (never raises)."""
        subscriber = self._subscriber
        if run_id in self._subscribed or subscriber is None:
            return
        try:
            await subscriber.add_run(run_id)
        except (ServiceError, RedisError, OSError) as exc:
            log.warning("live messages of run %s may be missed: %s", run_id, exc)
            return
        self._subscribed.add(run_id)

    @property
    def held(self) -> int:
        """Runs with nodes in flight."""
        return len(self._held)

    def holds(self, run_id: str) -> bool:
        """Does the run have nodes in flight?"""
        return run_id in self._held

    def hold(self, run_id: str, count: int = 1) -> None:
        self._held[run_id] = self._held.get(run_id, 0) + count

    def release(self, run_id: str) -> bool:
        """One node of the run fewer in flight; True once it has none left."""
        count = self._held.get(run_id, 0) - 1
        if count > 0:
            self._held[run_id] = count
            return False
        self._held.pop(run_id, None)
        if run_id in self._subscribed:
            asyncio.get_running_loop().call_later(UNFOLLOW_DELAY, self._maybe_unsubscribe, run_id)
        return True

    def _maybe_unsubscribe(self, run_id: str) -> None:
        if run_id in self._held or run_id not in self._subscribed:
            return
        self._subscribed.discard(run_id)
        if self._subscriber is not None:
            self._background.spawn(self._unsubscribe(run_id), f"unsubscribe from run {run_id}")

    async def _unsubscribe(self, run_id: str) -> None:
        subscriber = self._subscriber
        if subscriber is not None:  # else closed meanwhile: nothing left to stop
            await subscriber.remove_run(run_id)

    async def _replay(self, message: ChannelMessage) -> None:
        if message.kind == "log":
            payload = message.payload if isinstance(message.payload, dict) else {}
            node_logger(message.run_id, message.graph_id, message.node_id).log(
                int(payload.get("level", logging.INFO)),
                str(payload.get("msg", "")),
                extra={"remote": True},
            )
            return
        await current_services().builtins.channel.publish(message)
