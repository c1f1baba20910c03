"""Fixtures of the backend contracts: the Redis key namespace and a raw client to look with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from aethergraph.keys import Keys


@pytest.fixture
def keys(redis_namespace: str) -> Keys:
    """The key builder of one test: every name under its own, afterwards deleted, namespace."""
    return Keys(redis_namespace)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain blocking client, to look at what a Redis backend stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
