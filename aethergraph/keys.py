"""Every Redis key, channel and queue name AetherGraph uses, in one place.

All names live under one namespace prefix (default ``ag``) so that several deployments — or
parallel test runs — can share one Redis without colliding, and an operator can find (or delete)
everything of ours with ``SCAN MATCH ag:*``.
"""

from __future__ import annotations

import re

from aethergraph.errors import ConfigurationError

DEFAULT_NAMESPACE = "ag"
DEFAULT_QUEUE = "aethergraph"

#: What a namespace may be. Each excluded character breaks a name built here: ``:`` separates
#: the parts of a key (namespace ``a:b`` would read and delete namespace ``a``'s keys), ``.``
#: separates namespace and queue (``a.*``, the queues of namespace ``a``, would match those of
#: ``a.b``), ``*?[]`` are glob characters in ``SCAN MATCH`` patterns, and whitespace or control
#: characters make keys unreadable in ``redis-cli``. It is part of every key, hence the length cap.
NAMESPACE_RULE = (
    "1 to 64 characters, each a letter, digit, '_' or '-' (for example 'ag' or 'prod-eu')"
)
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_namespace(namespace: object) -> str:
    """``namespace`` if it is a valid key namespace, else a :class:`ConfigurationError`.

    The one rule for namespaces: ``Settings`` applies it when ``AETHERGRAPH_NAMESPACE`` is read
    (so a bad value fails at start-up, naming the variable), and :class:`Keys` applies it again
    for namespaces given in code.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"invalid key namespace {namespace!r}: it must be {NAMESPACE_RULE}; it prefixes "
            "every Redis key and queue name, so ':', '.', spaces and glob characters would "
            "mix it up with other namespaces."
        )
    return namespace


class Keys:
    """Key builder for one namespace."""

    __slots__ = ("ns",)

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.ns = check_namespace(namespace)

    # key/value service
    def kv(self, key: str) -> str:
        return f"{self.ns}:kv:{key}"

    # run-scoped memory (a Redis list of JSON events) and its sequence counter
    def memory(self, run_id: str) -> str:
        return f"{self.ns}:mem:{run_id}"

    def memory_seq(self, run_id: str) -> str:
        return f"{self.ns}:memseq:{run_id}"

    # artifacts stored in Redis (content addressed)
    def artifact(self, digest: str) -> str:
        return f"{self.ns}:art:{digest}"

    # a tool's code shipped by a client from a notebook (cloudpickle; content addressed)
    def shipped_code(self, digest: str) -> str:
        return f"{self.ns}:code:{digest}"

    # live channel/log/event messages of one run, pushed to the submitting client
    def run_channel(self, run_id: str) -> str:
        return f"{self.ns}:run:{run_id}:events"

    # per-client result stream: workers push node outcomes here, the client reads them
    def client_results(self, client_id: str) -> str:
        return f"{self.ns}:client:{client_id}:results"

    def client_lease(self, client_id: str) -> str:
        """Exists (with a short TTL the client keeps renewing) while the client is alive;
        workers skip the nodes of a client whose lease is gone."""
        return f"{self.ns}:client:{client_id}:lease"

    # durable run records (execution/celery/run_record.py), kept AETHERGRAPH_RUN_TTL seconds
    def run_info(self, run_id: str) -> str:
        """A hash: the run's graph, client, origin, state, times, counts and result."""
        return f"{self.ns}:run:{run_id}:info"

    def run_nodes(self, run_id: str) -> str:
        """A hash: node id -> its latest entry (sent: where its message is; or its outcome)."""
        return f"{self.ns}:run:{run_id}:nodes"

    def runs_index(self) -> str:
        """A sorted set of run ids by start time: ``aethergraph runs``."""
        return f"{self.ns}:runs:index"

    def live_runs(self) -> str:
        """A hash of the runs in flight: run id -> its client's JSON summary (graph, node counts
        by state, updated time), for ``aethergraph status`` (``execution/celery/live_runs.py``)."""
        return f"{self.ns}:runs:live"

    # worker registry: which tools each live worker serves (heartbeated, with a TTL)
    def worker(self, worker_id: str) -> str:
        return f"{self.ns}:worker:{worker_id}"

    def workers_pattern(self) -> str:
        return f"{self.ns}:worker:*"

    def workers_index(self) -> str:
        """The index of live workers, so discovery never has to SCAN the keyspace.

        A sorted set: member = worker id, score = the epoch seconds of its last heartbeat. A
        worker writes, on every heartbeat, its hash at :meth:`worker` (with a TTL) *first* and
        then ``ZADD <index> <now> <worker id>``; on a clean stop it does ``ZREM`` and ``DEL``.
        Readers list the members, read their hashes in one pipeline and ignore members whose
        hash expired (a dead worker); any reader may prune members scored long ago.
        """
        return f"{self.ns}:workers"

    def dead_letters(self) -> str:
        """Messages workers could not decode or take apart, newest first (a capped list).

        Each entry is JSON: ``queue``, ``reason``, ``at`` (epoch seconds) and ``message`` (the
        item as popped, cut at 64 kB). See ``execution/worker/bad_messages.py``.
        """
        return f"{self.ns}:dead-letters"

    def celery_unacked(self) -> str:
        """kombu's Redis hash of the messages workers hold and have not acknowledged yet.

        Field = the message's ``delivery_tag`` (the client sets it to the task id), value =
        ``[message, exchange, routing_key]``. kombu's default (``unacked``) is one hash for every
        deployment on the Redis DB, so the shortest visibility timeout among them would apply
        to all; ``celery_config`` names it inside the namespace instead.
        """
        return f"{self.ns}:unacked"

    def celery_unacked_index(self) -> str:
        """kombu's sorted set beside :meth:`celery_unacked`: delivery tag -> a time.

        kombu scores a message with its delivery time; a worker's heartbeat re-scores the
        messages it still holds with the broker's clock, so the score says when the holder was
        last seen alive (``execution/worker/heartbeat.py``).
        """
        return f"{self.ns}:unacked_index"

    def celery_unacked_mutex(self) -> str:
        """kombu's lock around its visibility-timeout sweep of :meth:`celery_unacked_index`."""
        return f"{self.ns}:unacked_mutex"

    def celery_events(self) -> str:
        """The exchange Celery's events (``task-failed``, worker heartbeats) travel on.

        Celery's default, ``celeryev``, is one for every deployment on the Redis DB: Flower and
        ``celery events`` would show other namespaces' tasks. Inside the namespace, ``aethergraph
        flower`` shows exactly this deployment's.
        """
        return f"{self.ns}.celeryev"

    def celery_control(self) -> str:
        """The name of Celery's remote-control exchange (``<name>.pidbox``): revokes and
        ``inspect`` broadcasts reach this namespace's workers only."""
        return self.ns

    def queue_prefix(self) -> str:
        """What every queue of the namespace starts with (``SCAN MATCH <prefix>*`` finds them)."""
        return f"{self.ns}."

    def tool_queue(self, queue: str | None) -> str:
        """The Redis list (Celery queue) behind a logical queue name, inside the namespace.

        ``@tool(queue="gpu")`` and ``aethergraph worker -Q gpu`` name the logical queue; the
        namespace prefix keeps two deployments on one Redis from taking each other's tasks.
        """
        return f"{self.ns}.{queue or DEFAULT_QUEUE}"
