"""The messages between a client and the workers.

*Tasks* are ordinary Celery protocol-2 messages in kombu's Redis envelope, so any Celery worker,
Flower and ``celery inspect`` understand them; building them here (instead of through
``apply_async``) lets the client publish a whole batch of ready nodes in one pipelined Redis round
trip at a small fraction of the CPU cost. The task's keyword arguments are the tool's arguments
(codec-encoded) plus one reserved entry, ``__ag__``, with the node's ids and where to send the
outcome.

*Outcomes* go the other way: a worker pushes one JSON document per finished attempt onto the
submitting client's result list (``Keys.client_results``), which the client pops as they come —
no polling per task. Next to ``outputs`` / ``failure`` (``NodeFailure.to_dict()``, ``retryable``
included) it carries ``started_at`` / ``finished_at``: epoch seconds measured on the worker
around the tool call, so a node's duration excludes its time in the queue.

*Origin*: both kinds name the process that sent them (``pid@host``). It is computed per
process, not at import: prefork pool children are forked from a parent that imported this
module, and would otherwise all report the parent's pid.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from typing import Any

from aethergraph import jsontext

META = "__ag__"

#: seconds between two heartbeats of a worker, and how long a beat keeps it alive: a worker
#: silent for ``HEARTBEAT_TTL`` (three missed beats) is dead to clients (``execution/worker/
#: heartbeat.py`` writes the beats, ``execution/celery/orphans.py`` acts on their absence)
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 6.0
_HOST = socket.gethostname()
_origin: tuple[int, str] = (0, "")


def origin() -> str:
    """``pid@host`` of the calling process (recomputed after a fork)."""
    global _origin
    pid = os.getpid()
    if _origin[0] != pid:
        _origin = (pid, f"{pid}@{_HOST}")
    return _origin[1]


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_envelope(
    *,
    task_id: str,
    task_name: str,
    kwargs: dict[str, Any],
    tool_name: str | None = None,
    queue: str,
    time_limit: float | None,
    soft_time_limit: float | None,
    kwargs_repr: str,
    delivery_tag: str | None = None,
) -> bytes:
    """The JSON kombu stores in the queue's Redis list for one Celery task message.

    ``delivery_tag`` names the message in kombu's ``unacked`` hash while a worker holds it
    (the client passes the task id, to check cheaply that a message still exists).
    ``tool_name``: the tool, when the task is another (a shipped notebook tool's messages are
    the ``aethergraph.shipped`` task): Celery's *shadow* name, which its events, worker log and
    Flower show instead of the task's."""
    body = jsontext.dumps([[], kwargs, _EMBED])
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task_name,
            "id": task_id,
            "shadow": tool_name if tool_name and tool_name != task_name else None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [time_limit, soft_time_limit],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": kwargs_repr,
            "origin": origin(),
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": None,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": delivery_tag or str(uuid.uuid4()),
        },
    }
    return jsontext.dumps(envelope)


#: longest kwargs text a message shows in Flower and Celery's events (what is cut says so)
REPR_LIMIT = 2000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def node_kwargs_repr(node: dict[str, Any], kwargs: dict[str, Any], limit: int = REPR_LIMIT) -> str:
    """What Flower and Celery's events show as a one-node message's kwargs: a dict literal
    with the run and node ids first, so that Flower finds a run's tasks by its id (free text, or
    ``kwargs:run_id=<id>``), and the tool's arguments under ``args`` (cut to a string when they
    are long, so the text stays a dict literal that Flower can parse)."""
    ids = (
        f"{{'run_id': {node.get('run_id')!r}, 'node_id': {node.get('node_id')!r}, "
        f"'attempt': {node.get('attempt')!r}"
    )
    args = repr({k: v for k, v in kwargs.items() if k != META})
    if len(args) > limit - len(ids):  # cut, as a string: the whole stays a dict literal
        args = repr(_cut(args, max(20, limit - len(ids) - 20)))
    return f"{ids}, 'args': {args}}}"


def pack_kwargs_repr(nodes: list[dict[str, Any]], limit: int = REPR_LIMIT) -> str:
    """The kwargs Flower shows for a pack: its run(s), how many nodes, and their ids."""
    runs = sorted({str(node.get("run_id")) for node in nodes})
    head: dict[str, Any] = {"run_id": runs[0]} if len(runs) == 1 else {"run_ids": runs}
    head["nodes"] = len(nodes)
    ids = [str(node.get("node_id")) for node in nodes]
    text = repr({**head, "node_ids": ids})
    while len(text) > limit and len(ids) > 1:  # drop ids from the end until it fits
        ids = ids[: max(1, len(ids) * 3 // 4)]
        text = repr({**head, "node_ids": [*ids, f"... {len(nodes) - len(ids)} more"]})
    return _cut(text, limit)


def outcome_message(
    *,
    task_id: str,
    meta: dict[str, Any],
    outputs: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
    started_at: float | None = None,
    finished_at: float | None = None,
    worker: str | None = None,
) -> bytes:
    """One finished attempt, as pushed to the client's result list.

    ``failure`` is ``NodeFailure.to_dict()``; ``started_at`` / ``finished_at`` are the worker's
    wall clock (epoch seconds) around the tool call; ``worker`` defaults to :func:`origin`.
    """
    return jsontext.dumps(
        {
            "task_id": task_id,
            "run_id": meta.get("run_id"),
            "node_id": meta.get("node_id"),
            "attempt": meta.get("attempt"),
            "ok": failure is None,
            "outputs": outputs,
            "failure": failure,
            "started_at": started_at,
            "finished_at": finished_at,
            "worker": worker or origin(),
        }
    )
