"""The Celery application shared by clients and workers, with safe defaults for Redis.

Why these defaults (see docs/distributed.md):

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it ran,
  and a worker process that dies mid-task puts its message back — a killed worker loses no node.
* ``worker_prefetch_multiplier=1``: a worker reserves one task per process, so long tools do not
  sit in one worker's buffer while other workers idle.
* ``visibility_timeout`` above the longest tool run: Redis redelivers a message only when its
  worker vanished without acknowledging it.
* JSON only (``accept_content=["json"]``): a message can never carry pickled code.
* Results expire (``result_expires``), never kept forever.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from aethergraph.errors import ConfigurationError
from aethergraph.keys import DEFAULT_QUEUE, Keys
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
    transport = {
        "visibility_timeout": visibility,
        # sweep for messages of vanished workers often enough to honour a short timeout
        "unacked_restore_interval": max(1, min(10, visibility // 4)),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": broker,
        "result_backend": settings.effective_result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": transport["visibility_timeout"]},
        "result_expires": int(settings.result_ttl),
        "task_default_queue": Keys(settings.namespace).tool_queue(DEFAULT_QUEUE),
        "task_ignore_result": True,
        "worker_send_task_events": True,
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
