"""Redis-backed built-in services, shared by every process of a deployment.

Workers run tool nodes in many processes, so ``context.kv()``, ``context.memory()`` and
``context.artifacts()`` need state that all of them (and the submitting client) see. These
backends keep it in Redis, under names from :class:`aethergraph.keys.Keys` only. The channel
backend and the live-event subscriber live in :mod:`aethergraph.services.builtins.redis_channel`.

A ``redis.asyncio`` client is bound to the event loop it first connected on, while these backends
are called from several loops and threads; each backend therefore keeps one client per loop
(:class:`PerLoopClients`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.connection
from redis.exceptions import NoScriptError

from aethergraph.errors import (
    ArtifactNotFoundError,
    ArtifactTooLargeError,
    ConfigurationError,
    ServiceUsageError,
)
from aethergraph.keys import Keys
from aethergraph.redis_clients import async_client, is_sentinel, parse_sentinel, sync_client
from aethergraph.services.builtins.artifacts import (
    INLINE_LIMIT,
    ArtifactStore,
    check_bytes,
    make_uri,
    parse_uri,
)
from aethergraph.services.builtins.kv import KVStore, check_key, check_ttl, encode_value
from aethergraph.services.builtins.memory import MemoryBackend, MemoryEvent
from aethergraph.settings import redact_url  # the one redaction (kombu's), re-exported

logger = logging.getLogger(__name__)

DEFAULT_TTL = 7 * 24 * 3600.0  # seconds: long enough to inspect a run, short enough not to pile up
DEFAULT_MAX_ARTIFACT_SIZE = 512 * 1024 * 1024  # Redis' default proto-max-bulk-len
_URL_SCHEMES = ("redis", "rediss", "unix")
_CLOSE_TIMEOUT = 5.0


@contextmanager
def closed_transport_is_a_connection_error() -> Iterator[None]:
    """Around an asyncio redis-py write: report a connection the server closed as what it is.

    redis-py#4287: writing on a connection the peer has closed can raise asyncio's internal
    ``AttributeError`` / ``TypeError`` ('NoneType' ...) instead of ``ConnectionError``, which
    bypasses every retry and outage handler. Only those 'NoneType' errors are translated; any
    other exception passes through unchanged.
    """
    try:
        yield
    except (AttributeError, TypeError) as exc:
        if "NoneType" not in str(exc):
            raise
        raise redis.ConnectionError(
            f"the Redis connection was closed while writing ({exc})"
        ) from exc


def check_redis_url(url: Any) -> str:
    """Validate a Redis URL up front, so a typo fails at configuration time, not in a worker."""
    if isinstance(url, str) and is_sentinel(url):
        parse_sentinel(url)  # its own clear errors
        return url
    if not isinstance(url, str) or urlsplit(url).scheme not in _URL_SCHEMES:
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(
            f"Redis backends need a redis://, rediss://, unix:// or sentinel:// URL, got {shown}; "
            "for example redis://:password@localhost:6379/0."
        )
    try:
        redis.asyncio.connection.parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)}: {exc}") from None
    return url


def check_keys(keys: Any) -> Keys:
    """Validate the key builder: every Redis name must come from :class:`Keys`."""
    if not isinstance(keys, Keys):
        raise ConfigurationError(
            f"Redis backends need an aethergraph.keys.Keys, got {type(keys).__name__}; "
            "pass Keys('<namespace>')."
        )
    return keys


def positive_number(owner: str, label: str, value: Any) -> float:
    """A backend setting that must be a positive number of seconds / bytes (else configuration
    fails at start-up, not on a worker's first call)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{owner}({label}=...) must be a positive number, got {value!r}.")
    return float(value)


def positive_int(owner: str, label: str, value: Any) -> int:
    """A backend setting that must be an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{owner}({label}=...) must be an int >= 1, got {value!r}.")
    return value


def _millis(seconds: float) -> int:
    """Seconds as whole milliseconds for ``PX``/``PEXPIRE``; never 0, which Redis rejects."""
    return max(1, round(seconds * 1000))


@dataclass(slots=True)
class _LoopClient:
    client: redis.asyncio.Redis
    guard: AsyncGenerator[None, None]


class PerLoopClients:
    """Lazily created ``redis.asyncio`` clients, one per event loop.

    A client's connections belong to the loop that opened them, and using them from another loop
    fails, so each loop gets its own. A small async generator started on the loop closes that
    loop's client when the loop shuts down (``asyncio.run`` finalizes async generators before it
    closes the loop); :meth:`aclose` closes all of them. Using the owner after ``aclose`` simply
    opens fresh clients.
    """

    def __init__(self, url: str) -> None:
        self.url = check_redis_url(url)
        self._lock = threading.Lock()
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

    async def get(self) -> redis.asyncio.Redis:
        """The client of the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is not None:
                return entry.client
            for dead in [other for other in self._clients if other.is_closed()]:
                del self._clients[dead]  # their loops are gone; nothing can close them now
            client = async_client(self.url, decode_responses=False)
            guard = self._close_on_loop_shutdown(loop, client)
            self._clients[loop] = _LoopClient(client, guard)
        await anext(guard)  # first iteration registers it with this loop's async-gen hooks
        return client

    async def _close_on_loop_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._clients.get(loop)
                if entry is not None and entry.client is client:
                    del self._clients[loop]
            await client.aclose()

    async def aclose(self) -> None:
        """Close the clients of every loop (others' on their own loop, which must be running)."""
        current = asyncio.get_running_loop()
        with self._lock:
            entries = list(self._clients.items())
            self._clients.clear()
        for loop, entry in entries:
            if loop is current:
                await entry.guard.aclose()
                await entry.client.aclose()  # in case the guard had not started yet
            elif not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(entry.guard.aclose(), loop)
                if not loop.is_running():
                    continue  # runs when that loop next runs; waiting here could hang
                try:
                    await asyncio.wait_for(asyncio.wrap_future(future), _CLOSE_TIMEOUT)
                except Exception as exc:
                    logger.warning("could not close a Redis client of another loop: %r", exc)


class RedisService:
    """Base of every Redis backend (here and in ``redis_channel``): a validated URL, a key
    namespace, one client per event loop, a password-free ``url`` and ``repr``."""

    def __init__(self, url: str, keys: Keys) -> None:
        self._clients = PerLoopClients(url)
        self.keys = check_keys(keys)

    @property
    def url(self) -> str:
        """The Redis URL with its password redacted (safe to show)."""
        return redact_url(self._clients.url)

    async def _redis(self) -> redis.asyncio.Redis:
        return await self._clients.get()

    async def aclose(self) -> None:
        """Close every connection this backend opened, on any event loop."""
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, namespace={self.keys.ns!r})"


class RedisKV(RedisService, KVStore):
    """``context.kv()`` in Redis: JSON strings under ``keys.kv(key)``, expiry by ``SET ... PX``."""

    async def get(self, key: str, default: Any = None) -> Any:
        check_key(key)
        raw = await (await self._redis()).get(self.keys.kv(key))
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        encoded = encode_value(key, value)
        # A plain SET also drops an earlier TTL, matching the in-process store.
        px = None if seconds is None else _millis(seconds)
        await (await self._redis()).set(self.keys.kv(key), encoded, px=px)

    async def delete(self, key: str) -> bool:
        check_key(key)
        return bool(await (await self._redis()).delete(self.keys.kv(key)))

    async def exists(self, key: str) -> bool:
        check_key(key)
        return bool(await (await self._redis()).exists(self.keys.kv(key)))


# Why a script and not MULTI: the event JSON must contain the seq that INCR returns, and a MULTI
# cannot feed one command's result into the next. The script is just as atomic (nothing runs in
# between), so list order always equals seq order, even with many workers appending at once.
# KEYS: event list, seq counter. ARGV: event JSON up to its seq value, max events, ttl in ms.
_APPEND_LUA = """
local seq = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], ARGV[1] .. string.format('%d', seq) .. '}')
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return seq
"""
_APPEND_SHA = hashlib.sha1(_APPEND_LUA.encode()).hexdigest()


def _decode_events(raws: Sequence[bytes | str]) -> list[MemoryEvent]:
    events: list[MemoryEvent] = []
    for raw in raws:
        try:
            events.append(MemoryEvent.from_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError) as exc:  # foreign or damaged entry: skip it
            logger.warning("skipping an undecodable memory event %r: %r", raw[:200], exc)
    return events


class RedisMemoryBackend(RedisService, MemoryBackend):
    """``context.memory()`` in Redis: a list of JSON events per run plus an ``INCR`` counter.

    Each run keeps at most ``max_events_per_run`` events (oldest trimmed, ``seq`` keeps counting);
    both keys expire ``ttl`` seconds after the run's last append, which bounds how many runs pile
    up. :meth:`snapshot` is synchronous by interface and uses its own blocking client.
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        max_events_per_run: int = 10_000,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        super().__init__(url, keys)
        owner = type(self).__name__
        self.max_events_per_run = positive_int(owner, "max_events_per_run", max_events_per_run)
        self.ttl = positive_number(owner, "ttl", ttl)
        self._sync_lock = threading.Lock()
        self._sync_client: redis.Redis | None = None

    async def append(
        self, *, run_id: str, graph_id: str, node_id: str, kind: str, data: Any
    ) -> MemoryEvent:
        ts = time.time()
        fields = {
            "run_id": run_id,
            "graph_id": graph_id,
            "node_id": node_id,
            "kind": kind,
            "data": data,
            "ts": ts,
        }
        try:
            body = json.dumps(fields, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ServiceUsageError(
                f"memory().record({kind!r}, data) needs JSON-compatible data ({exc})."
            ) from exc
        head = body[:-1] + ', "seq": '  # the script appends the seq and the closing brace
        args = (
            self.keys.memory(run_id),
            self.keys.memory_seq(run_id),
            head,
            self.max_events_per_run,
            _millis(self.ttl),
        )
        client = await self._redis()
        try:
            seq = await client.evalsha(_APPEND_SHA, 2, *args)
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH)
            seq = await client.eval(_APPEND_LUA, 2, *args)
        return MemoryEvent(
            run_id=run_id,
            graph_id=graph_id,
            node_id=node_id,
            kind=kind,
            data=data,
            ts=ts,
            seq=int(seq),
        )

    async def recent(self, run_id: str, n: int = 20, kind: str | None = None) -> list[MemoryEvent]:
        if n < 1:
            return []
        client = await self._redis()
        key = self.keys.memory(run_id)
        n = min(n, self.max_events_per_run)
        if kind is None:
            return _decode_events(await client.lrange(key, -n, -1))
        # Walk back from the tail in chunks until n matches or the head. Concurrent appends shift
        # tail-relative indices, so entries may be seen twice: only accept seqs below the oldest
        # one already seen.
        chunk = max(256, 4 * n)
        picked: list[MemoryEvent] = []
        oldest_seen: int | None = None
        offset = 0
        while len(picked) < n and offset < self.max_events_per_run:
            raws = await client.lrange(key, -(offset + chunk), -(offset + 1))
            for event in reversed(_decode_events(raws)):
                if oldest_seen is not None and event.seq >= oldest_seen:
                    continue
                oldest_seen = event.seq
                if event.kind == kind:
                    picked.append(event)
                    if len(picked) == n:
                        break
            if len(raws) < chunk:
                break  # reached the head of the list
            offset += chunk
        picked.reverse()
        return picked

    def _blocking_client(self) -> redis.Redis:
        with self._sync_lock:
            if self._sync_client is None:
                self._sync_client = sync_client(self._clients.url, decode_responses=False)
            return self._sync_client

    def snapshot(self, run_id: str) -> list[MemoryEvent]:
        """All retained events of the run (blocking; call it off the event loop in async code)."""
        raws = self._blocking_client().lrange(self.keys.memory(run_id), 0, -1)
        return _decode_events(raws)

    async def clear(self, run_id: str) -> None:
        await (await self._redis()).delete(self.keys.memory(run_id), self.keys.memory_seq(run_id))

    async def aclose(self) -> None:
        await super().aclose()
        with self._sync_lock:
            client, self._sync_client = self._sync_client, None
        if client is not None:
            client.close()


class RedisArtifactStore(RedisService, ArtifactStore):
    """``context.artifacts()`` in Redis: content-addressed blobs under ``keys.artifact(digest)``.

    Meant for the small-to-medium results tools pass between workers without a shared disk.
    Objects expire ``ttl`` seconds after their last save (every save refreshes it); objects over
    ``max_size`` bytes are refused, because Redis holds everything in memory.
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        ttl: float = DEFAULT_TTL,
        max_size: int = DEFAULT_MAX_ARTIFACT_SIZE,
    ) -> None:
        super().__init__(url, keys)
        owner = type(self).__name__
        self.ttl = positive_number(owner, "ttl", ttl)
        self.max_size = positive_int(owner, "max_size", max_size)

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise ArtifactTooLargeError(
                f"artifact of {size} bytes exceeds the Redis artifact store's limit of "
                f"{self.max_size} bytes; keep data this big in a shared filesystem store "
                "(FilesystemArtifactStore on a disk every worker mounts) or raise max_size."
            )

    async def save_bytes(self, data: bytes) -> str:
        data = check_bytes(data)
        self._check_size(len(data))
        if len(data) > INLINE_LIMIT:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            digest = hashlib.sha256(data).hexdigest()
        key = self.keys.artifact(digest)
        ttl_ms = _millis(self.ttl)
        # NX: same digest means same content, so an existing object is never rewritten; the
        # PEXPIRE then refreshes its lifetime either way. No MULTI needed: both are idempotent.
        async with (await self._redis()).pipeline(transaction=False) as pipe:
            pipe.set(key, data, px=ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()
        return make_uri(digest)

    async def load_bytes(self, uri: str) -> bytes:
        digest = parse_uri(uri)
        raw = await (await self._redis()).get(self.keys.artifact(digest))
        if raw is None:
            raise ArtifactNotFoundError(
                f"artifact {uri} is not in the Redis artifact store (namespace "
                f"{self.keys.ns!r}); it was never saved there or expired after its ttl of "
                f"{self.ttl:g}s. Save it again, or use a longer ttl."
            )
        return raw if isinstance(raw, bytes) else raw.encode()  # bytes: decode_responses=False

    async def exists(self, uri: str) -> bool:
        digest = parse_uri(uri)
        return bool(await (await self._redis()).exists(self.keys.artifact(digest)))

    def _read_file(self, path: Path) -> bytes:
        if not path.is_file():
            raise FileNotFoundError(
                f"artifacts().save_file() found no file at {str(path)!r}; pass an existing file."
            )
        self._check_size(path.stat().st_size)  # before reading a huge file into memory
        return path.read_bytes()

    async def save_file(self, path: str | os.PathLike[str]) -> str:
        """Store the file at ``path``; read whole (it must fit ``max_size``), off the loop."""
        if not isinstance(path, str | os.PathLike):
            raise ServiceUsageError(
                f"artifacts().save_file() takes a path, got {type(path).__name__}; "
                "use save_bytes()/save_text() for in-memory data."
            )
        return await self.save_bytes(await asyncio.to_thread(self._read_file, Path(path)))

    async def load_file(self, uri: str, dest: str | os.PathLike[str]) -> Path:
        if not isinstance(dest, str | os.PathLike):
            raise ServiceUsageError(
                f"artifacts().load_file() dest must be a path, got {type(dest).__name__}."
            )
        data = await self.load_bytes(uri)
        target = Path(dest)

        def write() -> Path:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            return target

        return await asyncio.to_thread(write)


__all__ = [
    "DEFAULT_MAX_ARTIFACT_SIZE",
    "DEFAULT_TTL",
    "ArtifactTooLargeError",
    "PerLoopClients",
    "RedisArtifactStore",
    "RedisKV",
    "RedisMemoryBackend",
    "RedisService",
    "check_keys",
    "check_redis_url",
    "positive_int",
    "positive_number",
    "redact_url",
]
