"""The executor's connection to the broker: clients that ride out blips, and the outage bound.

Two layers of patience, so that there is neither a hand-written reconnect loop nor a silent hang:

* **Blips** — a dropped connection, a failover taking a moment — are absorbed inside each
  command by redis-py's own ``Retry`` with ``ExponentialBackoff``, configured on every client
  this executor opens (:func:`open_client`).
* **Outages** surface as a ``RedisError`` once those retries are spent. The background task that
  met it (the dispatcher, the result listener) keeps its work — a batch goes back to the outbox,
  published nodes stay awaited — and tries again, pausing by the same backoff (:class:`Outage`).
  When the broker has stayed unreachable for ``settings.broker_outage_timeout`` seconds, the
  nodes waiting on it fail with :class:`~aethergraph.errors.BrokerUnavailableError`, naming the
  broker with its password redacted: a run never hangs on a dead broker, and a tool's retry
  policy may try its nodes again.

Every client also has a socket timeout, so a broker that accepts connections but does not answer
(paused, overloaded, a half-open TCP connection) is an error too, not a wait without end.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError

from aethergraph.errors import BrokerUnavailableError
from aethergraph.redis_clients import async_client
from aethergraph.settings import redact_url

#: errors that mean "the broker did not answer" (as opposed to a bug of ours)
BROKER_ERRORS: tuple[type[Exception], ...] = (RedisError,)

BLIP_RETRIES = 3  # per command, inside redis-py: ~0.35 s of retrying in all
COMMAND_TIMEOUT = 10.0  # seconds a command may take before the connection counts as dead
CONNECT_TIMEOUT = 2.0


def open_client(url: str, *, blocks_for: float = 0.0) -> aioredis.Redis:
    """A client for the executor's own commands; ``blocks_for``: its longest blocking pop.

    Only connection errors are retried inside the command: a command that timed out against a
    broker that does not answer would just wait another ``COMMAND_TIMEOUT`` per retry, so it
    goes straight to the outage logic, which keeps the time bound.
    """
    return async_client(
        url,
        retry=Retry(
            ExponentialBackoff(cap=1.0, base=0.05),
            BLIP_RETRIES,
            supported_errors=(ConnectionError,),
        ),
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT + blocks_for,
    )


class Outage:
    """How long the broker has been unreachable, as one background task sees it."""

    def __init__(self, url: str, bound: float) -> None:
        self.broker = redact_url(url)
        self.bound = bound
        self._since: float | None = None
        self._failures = 0
        self._backoff = ExponentialBackoff(cap=2.0, base=0.1)

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self) -> bool:
        """Record a failed attempt; True once the outage has outlasted the bound."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        self._failures += 1
        return now - self._since >= self.bound

    def pause(self) -> float:
        """Seconds to wait before the next attempt."""
        return self._backoff.compute(self._failures)

    def clear(self) -> None:
        """The broker answered: the outage (if any) is over."""
        self._since = None
        self._failures = 0

    def error(self, exc: BaseException, what: str) -> BrokerUnavailableError:
        """The error the affected nodes fail with."""
        return BrokerUnavailableError(
            f"the broker {self.broker} was unreachable for more than {self.bound:g}s while "
            f"{what} ({type(exc).__name__}: {exc}); check that Redis is running and reachable, "
            "or raise AETHERGRAPH_BROKER_OUTAGE_TIMEOUT to wait longer"
        )
