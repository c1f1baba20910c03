"""``context.kv()``: a small key/value store for flags, counters and cached results.

Values are JSON-compatible and stored as copies (the semantics a Redis backend has), so code
written against the in-process store behaves the same when workers share a remote one.
Large or binary values belong in ``context.artifacts()``; store their URI here instead.

A bad argument (a key that is not a non-empty str, a ttl that is not positive seconds, a value
that is not JSON-compatible) raises :class:`~aethergraph.errors.ServiceUsageError`, the same from
every backend, so node code can catch one class wherever it runs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from aethergraph.errors import ServiceUsageError


def check_key(key: Any) -> str:
    """Validate a key: a non-empty str."""
    if not isinstance(key, str):
        raise ServiceUsageError(
            f"kv() keys must be str, got {type(key).__name__} ({key!r}); "
            "format the key yourself, e.g. f'user:{user_id}'."
        )
    if not key:
        raise ServiceUsageError("kv() keys must be non-empty strings; pass a name such as 'seen'.")
    return key


def check_ttl(ttl: Any) -> float | None:
    """Validate a ttl: positive, finite seconds, or None for no expiry."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ServiceUsageError(
            f"kv().set(ttl=...) must be seconds or None, got {type(ttl).__name__}."
        )
    if not math.isfinite(ttl) or ttl <= 0:
        raise ServiceUsageError(
            f"kv().set(ttl=...) must be a positive number of seconds, got {ttl!r}; "
            "pass ttl=None to keep the value until it is deleted."
        )
    return float(ttl)


def encode_value(key: str, value: Any) -> str:
    """Serialise a value to JSON, with a helpful error for values that cannot be."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ServiceUsageError(
            f"kv().set({key!r}, ...) needs a JSON-compatible value, got {type(value).__name__} "
            f"({exc}); store binary or large data with context.artifacts() and put its URI here."
        ) from exc


class KVStore(ABC):
    """Key/value store interface; every method is async so remote backends fit."""

    @abstractmethod
    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` if absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store a JSON-compatible value, expiring after ``ttl`` seconds if given."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if something (unexpired) was deleted."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds an unexpired value."""


class InMemoryKV(KVStore):
    """Thread-safe in-process store; expired entries are purged lazily on access.

    ``clock`` is injectable (default ``time.monotonic``) so expiry can be tested without sleeping.
    """

    _PURGE_EVERY = 256

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, tuple[str, float | None]] = {}
        self._writes = 0

    def _live(self, key: str, now: float) -> str | None:
        # Caller holds the lock.
        entry = self._data.get(key)
        if entry is None:
            return None
        encoded, expires_at = entry
        if expires_at is not None and expires_at <= now:
            del self._data[key]
            return None
        return encoded

    def _purge_expired(self, now: float) -> None:
        # Caller holds the lock; keeps keys that are written once and never read from piling up.
        dead = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for key in dead:
            del self._data[key]

    async def get(self, key: str, default: Any = None) -> Any:
        check_key(key)
        with self._lock:
            encoded = self._live(key, self._clock())
        return default if encoded is None else json.loads(encoded)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        encoded = encode_value(key, value)
        with self._lock:
            now = self._clock()
            self._data[key] = (encoded, None if seconds is None else now + seconds)
            self._writes += 1
            if self._writes % self._PURGE_EVERY == 0:
                self._purge_expired(now)

    async def delete(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            found = self._live(key, self._clock()) is not None
            self._data.pop(key, None)
        return found

    async def exists(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            return self._live(key, self._clock()) is not None

    def __len__(self) -> int:
        """Number of unexpired keys (purges expired ones as a side effect).

        Beware: with ``__len__`` an empty store is falsy, so ``kv or default`` replaces an empty
        store. Test a store with ``is None``, never by truth value (review D5).
        """
        with self._lock:
            self._purge_expired(self._clock())
            return len(self._data)


__all__ = ["InMemoryKV", "KVStore", "check_key", "check_ttl", "encode_value"]
