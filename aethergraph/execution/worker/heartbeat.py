"""The worker's heartbeat: which tools and queues a live worker serves, for client discovery.

Every ``HEARTBEAT_INTERVAL`` seconds a thread of the worker's main process writes

* a hash ``Keys.worker(id)`` with its tools, queues, pool, concurrency, host, pid, Celery node
  name and start time, which
  expires after ``HEARTBEAT_TTL`` seconds without a beat (a killed worker disappears by itself);
* ``held``: the ids of the messages this worker has received and not finished (reserved or
  running; Celery's ``worker.state.reserved_requests`` in the main process). They are the
  messages' delivery tags in kombu's ``unacked`` hash, so a client can tell a message a live
  worker holds from one whose worker died — the basis of recovering a dead worker's nodes
  without waiting for the visibility timeout;
* ``busy``: how many of them a pool process is running now (Celery's ``active_requests``): the
  slots in use, so ``held - busy`` messages wait in this worker's prefetch;
* a fresh score, the broker's clock now, for each held message in kombu's unacked index
  (``Keys.celery_unacked_index``). kombu scores a message once, when it is delivered, and its
  visibility-timeout sweep puts back every message scored longer ago than the timeout — also
  one a live worker is still running (a long tool, a pack of many nodes). Re-scored on every
  beat, a score says when the holder was last seen alive: the sweep (and a client's recovery
  check, ``execution/celery/orphans.py``) only ever takes back messages of a worker that
  stopped beating, whatever the tools' run times;
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
from celery.worker import state as worker_state

from aethergraph.execution.wire import HEARTBEAT_INTERVAL, HEARTBEAT_TTL
from aethergraph.keys import Keys
from aethergraph.redis_clients import sync_client

log = logging.getLogger("aethergraph.worker")


#: re-score held messages with the broker's clock (one clock for every worker and client);
#: ``XX``: a message acknowledged meanwhile is not added back
RESCORE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i])
end
return #ARGV
"""


def held_ids() -> list[str]:
    """The ids of the messages this worker process holds (reserved or running), sorted.

    Celery mutates its weak set of requests on the consumer thread; a copy taken from this
    thread may meet a change in size, so it is retried (the next beat corrects any miss).
    """
    for _ in range(5):
        try:
            return sorted({str(request.id) for request in tuple(worker_state.reserved_requests)})
        except RuntimeError:  # the set changed size during the copy
            continue
    return []


def busy_count() -> int:
    """How many messages this worker's pool processes are running now (not merely reserved)."""
    return len(worker_state.active_requests)


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
        name: str = "",
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
            "name": name,
            "started": str(time.time()),
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
        client = sync_client(
            self.url, socket_connect_timeout=self.interval, socket_timeout=self.interval
        )
        rescore = client.register_script(RESCORE)
        unacked_index = self.keys.celery_unacked_index()
        try:
            while not self._stop.is_set():
                try:
                    now = time.time()
                    held = held_ids()
                    pipe = client.pipeline(transaction=False)
                    beat: dict[Any, Any] = {  # redis-py's own type
                        **self.info,
                        "ts": str(now),
                        "held": json.dumps(held),
                        "busy": str(busy_count()),
                    }
                    pipe.hset(key, mapping=beat)
                    pipe.pexpire(key, int(self.ttl * 1000))
                    pipe.zadd(index, {self.worker_id: now})
                    if held:
                        rescore(keys=[unacked_index], args=held, client=pipe)
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
