"""The worker's heartbeat: which tools and queues a live worker serves, for client discovery.

Every ``HEARTBEAT_INTERVAL`` seconds a thread of the worker's main process writes

* a hash ``Keys.worker(id)`` with its tools, queues, pool, concurrency, host and pid, which
  expires after ``HEARTBEAT_TTL`` seconds without a beat (a killed worker disappears by itself);
* its id into the sorted set ``Keys.workers_index()`` with the beat's time as the score, so a
  client finds the live workers with one ``ZRANGEBYSCORE`` instead of scanning the keyspace
  (entries older than the TTL are dead workers; readers ignore them and may prune them).

A clean shutdown removes both at once, so clients stop routing to it without waiting for the TTL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from aethergraph.keys import Keys

log = logging.getLogger("aethergraph.worker")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 6.0


class Heartbeat:
    """A background thread that keeps this worker's liveness entries fresh."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        worker_id: str,
        *,
        tools: Sequence[str],
        queues: Sequence[str],
        pool: str,
        concurrency: int,
        interval: float = HEARTBEAT_INTERVAL,
        ttl: float = HEARTBEAT_TTL,
    ) -> None:
        self.url = url
        self.keys = keys
        self.worker_id = worker_id
        self.interval = interval
        self.ttl = ttl
        self.info: dict[str, str] = {
            "tools": json.dumps(sorted(tools)),
            "queues": json.dumps(list(queues)),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "pool": pool,
            "concurrency": str(concurrency),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="aethergraph-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and remove this worker's entries (waits up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        key = self.keys.worker(self.worker_id)
        index = self.keys.workers_index()
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=self.interval, socket_timeout=self.interval
        )
        try:
            while not self._stop.is_set():
                try:
                    now = time.time()
                    pipe = client.pipeline(transaction=False)
                    beat: dict[Any, Any] = {**self.info, "ts": str(now)}  # redis-py's own type
                    pipe.hset(key, mapping=beat)
                    pipe.pexpire(key, int(self.ttl * 1000))
                    pipe.zadd(index, {self.worker_id: now})
                    pipe.execute()
                except redis.RedisError as exc:
                    log.warning("heartbeat failed: %s", exc)
                self._stop.wait(self.interval)
            try:
                pipe = client.pipeline(transaction=False)
                pipe.delete(key)
                pipe.zrem(index, self.worker_id)
                pipe.execute()
            except redis.RedisError as exc:
                log.warning("could not remove this worker's heartbeat: %s", exc)
        finally:
            client.close()
