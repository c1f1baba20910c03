"""Redis clients from a broker URL: one place that knows ``redis://`` from ``sentinel://``.

Every Redis client AetherGraph opens on the broker — the client's publisher and result
listener, the workers' outcome pusher and heartbeat, the built-in kv / memory / artifacts /
channel backends, ``aethergraph status`` — comes from :func:`sync_client` or
:func:`async_client`, so a highly available broker behind Redis Sentinel works everywhere with
one URL, in the form Celery and kombu use for their Sentinel transport::

    sentinel://:PASSWORD@sentinel-1:26379;sentinel://:PASSWORD@sentinel-2:26379;sentinel://:PASSWORD@sentinel-3:26379/0?master_name=mymaster

Each ``sentinel://`` part names one Sentinel; the password is the *master's* (``requirepass`` /
the ACL user's, as in ``redis://``; give ``user:password@`` for an ACL user), the path the
database, and ``master_name`` the monitored master's name. Clients ask the Sentinels for the
current master on every (re)connect, so a failover is a reconnect, not an outage. Sentinels that
require a password of their own take ``sentinel_password`` in the query. Celery gets the same
URL without the query and ``master_name`` in its transport options (``celery_config``).

Other URLs go to redis-py's ``from_url`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from aethergraph.errors import ConfigurationError

SENTINEL_SCHEME = "sentinel://"
SENTINEL_FORM = (
    "sentinel://[[user]:password@]host:port[;sentinel://...]/db?master_name=NAME "
    "(one part per Sentinel)"
)


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``sentinel://`` broker URL."""

    sentinels: list[tuple[str, int]]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    #: what Celery's ``broker_url`` gets: the parts without the query
    celery_url: str = field(default="", repr=False)


def parse_sentinel(url: str) -> SentinelURL:
    """The Sentinels, master name, database and credentials of a ``sentinel://`` URL."""
    head, _, query = url.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for part in head.split(";"):
        if not part.startswith(SENTINEL_SCHEME):
            raise ConfigurationError(f"every part of a Sentinel URL must be {SENTINEL_FORM}")
        parts = urlsplit(part)
        try:
            port = parts.port or 26379
        except ValueError as exc:
            raise ConfigurationError(f"a Sentinel URL has a bad port: {SENTINEL_FORM}") from exc
        if not parts.hostname:
            raise ConfigurationError(f"a Sentinel URL part has no host: {SENTINEL_FORM}")
        sentinels.append((parts.hostname, port))
        username = unquote(parts.username) if parts.username else username
        password = unquote(parts.password) if parts.password else password
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigurationError(f"a Sentinel URL's database must be a number: {path!r}")
            db = int(path)
    master = params.get("master_name")
    if not master:
        raise ConfigurationError(
            f"a Sentinel URL needs the master's name: add ?master_name=NAME ({SENTINEL_FORM})"
        )
    return SentinelURL(
        sentinels, master, db, username, password, params.get("sentinel_password"), head
    )


def _sentinel_kwargs(parsed: SentinelURL, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the connection to the Sentinels themselves gets: timeouts, and their password."""
    own = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
    if parsed.sentinel_password:
        own["password"] = parsed.sentinel_password
    return own


def sync_client(url: str, **kwargs: Any) -> redis.Redis:
    """A blocking client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or Sentinel)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kwargs)
    parsed = parse_sentinel(url)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        parsed.sentinels, sentinel_kwargs=_sentinel_kwargs(parsed, kwargs)
    )
    return sentinel.master_for(  # type: ignore[no-any-return,no-untyped-call]
        parsed.master_name,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **kwargs,
    )


def async_client(url: str, **kwargs: Any) -> redis.asyncio.Redis:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or Sentinel)."""
    if not is_sentinel(url):
        return redis.asyncio.Redis.from_url(url, **kwargs)
    parsed = parse_sentinel(url)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        parsed.sentinels, sentinel_kwargs=_sentinel_kwargs(parsed, kwargs)
    )
    return sentinel.master_for(  # type: ignore[no-any-return]
        parsed.master_name,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **kwargs,
    )
