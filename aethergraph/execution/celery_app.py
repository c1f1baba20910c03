"""The Celery application shared by clients and workers, with safe defaults for Redis.

Why these defaults (see docs/distributed.md):

* ``task_acks_late``: a task is acknowledged only after it ran. A pool process that dies
  mid-task is *not* requeued by Celery (``task_reject_on_worker_lost=False``): the worker hands
  the message back to its client, which counts the death against the node (poison nodes) and
  sends it again; a whole worker that dies is found by its missing heartbeats (see
  docs/reliability.md).
* ``worker_prefetch_multiplier=1``: a worker reserves one task per process, so long tools do not
  sit in one worker's buffer while other workers idle.
* ``visibility_timeout``: kombu's own sweep puts back a message whose holder has not re-scored
  it for that long (workers re-score what they hold on every heartbeat): a backstop behind the
  clients' recovery, in the namespace's own unacked keys.
* JSON only (``accept_content=["json"]``): a message can never carry pickled code.
* Results expire (``result_expires``), never kept forever.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from aethergraph.errors import ConfigurationError
from aethergraph.keys import DEFAULT_QUEUE, Keys
from aethergraph.redis_clients import is_sentinel, parse_sentinel
from aethergraph.settings import Settings, get_settings

APP_NAME = "aethergraph"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration AetherGraph uses (exposed so operators can inspect it)."""
    broker = settings.broker_url
    if not broker:
        raise ConfigurationError(
            "no broker configured: set AETHERGRAPH_BROKER_URL=redis://host:6379/0, or use a "
            "LocalCluster (aethergraph.cluster.LocalCluster) for an embedded one"
        )
    visibility = max(int(settings.visibility_timeout), 1)
    keys = Keys(settings.namespace)
    transport = {
        # the namespace's own hash, index and lock: each deployment's sweep is its own
        "unacked_key": keys.celery_unacked(),
        "unacked_index_key": keys.celery_unacked_index(),
        "unacked_mutex_key": keys.celery_unacked_mutex(),
        "visibility_timeout": visibility,
        # sweep for messages of vanished workers often enough to honour a short timeout
        "unacked_restore_interval": max(1, min(10, visibility // 4)),
        "unacked_restore_throttle": 1,
    }
    result_backend = settings.effective_result_backend
    result_transport: dict[str, Any] = {"visibility_timeout": transport["visibility_timeout"]}
    if is_sentinel(broker):  # kombu's Sentinel transport: the master's name as an option
        sentinel = parse_sentinel(broker)
        broker = sentinel.celery_url
        transport["master_name"] = sentinel.master_name
        if sentinel.sentinel_password:
            transport["sentinel_kwargs"] = {"password": sentinel.sentinel_password}
    if result_backend and is_sentinel(result_backend):
        backend = parse_sentinel(result_backend)
        result_backend = backend.celery_url
        result_transport["master_name"] = backend.master_name
    return {
        "broker_url": broker,
        "result_backend": result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": result_transport,
        "result_expires": int(settings.result_ttl),
        "task_default_queue": keys.tool_queue(DEFAULT_QUEUE),
        "task_ignore_result": True,
        "worker_send_task_events": True,
        # the namespace's own event and control exchanges: Flower, revokes and inspect see
        # this deployment only (Celery's defaults are shared by every app on the Redis DB)
        "event_exchange": keys.celery_events(),
        "event_queue_prefix": keys.celery_events(),  # receivers' queues: <ns>.celeryev.<id>
        "control_exchange": keys.celery_control(),
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_track_started": False,
        "enable_utc": True,
    }


def make_celery_app(settings: Settings | None = None) -> Celery:
    """A configured Celery app (tool tasks are registered by the worker runtime)."""
    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(celery_config(settings or get_settings()))
    return app
