"""Every Redis key, channel and queue name AetherGraph uses, in one place.

All names live under one namespace prefix (default ``ag``) so that several deployments — or
parallel test runs — can share one Redis without colliding, and an operator can find (or delete)
everything of ours with ``SCAN MATCH ag:*``.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "ag"
DEFAULT_QUEUE = "aethergraph"


class Keys:
    """Key builder for one namespace."""

    __slots__ = ("ns",)

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace or ":" in namespace or " " in namespace:
            raise ValueError(
                f"namespace must be a non-empty word without ':' or spaces: {namespace!r}"
            )
        self.ns = namespace

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

    # live channel/log/event messages of one run, pushed to the submitting client
    def run_channel(self, run_id: str) -> str:
        return f"{self.ns}:run:{run_id}:events"

    # per-client result stream: workers push node outcomes here, the client reads them
    def client_results(self, client_id: str) -> str:
        return f"{self.ns}:client:{client_id}:results"

    # worker registry: which tools each live worker serves (heartbeated, with a TTL)
    def worker(self, worker_id: str) -> str:
        return f"{self.ns}:worker:{worker_id}"

    def workers_pattern(self) -> str:
        return f"{self.ns}:worker:*"

    def tool_queue(self, queue: str | None) -> str:
        """The Redis list (Celery queue) behind a logical queue name, inside the namespace.

        ``@tool(queue="gpu")`` and ``aethergraph worker -Q gpu`` name the logical queue; the
        namespace prefix keeps two deployments on one Redis from taking each other's tasks.
        """
        return f"{self.ns}.{queue or DEFAULT_QUEUE}"
