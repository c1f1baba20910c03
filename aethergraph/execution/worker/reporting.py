"""What a message's Celery task tells Celery — and so Flower, Celery's events and the logs.

Outcomes travel to the client on its own Redis list (``outcomes.py``), not as Celery results,
so the Celery task itself would "succeed" with ``None`` even when its tool raised: Flower would
show a failed node as SUCCESS, count it as a success in its ``/metrics`` and show a retry as
two successes. Once a message's outcomes are pushed, the task therefore ends the way its nodes
did:

* every node succeeded: the task returns :func:`summary` (``square_3 of run 62c1…: done``),
  which Flower shows as the result;
* a node failed and the client will send it again (the failure is retryable and the attempt is
  within the tool's ``retries``, both carried in the message): the task raises Celery's
  ``Retry`` — Flower shows RETRY and counts a ``task-retried`` event; the next attempt is a new
  message (a new task id), sent by the client, not by Celery;
* otherwise: the task raises a :class:`~aethergraph.errors.ToolError` naming the node, the run
  and the remote exception, chained from the tool's own exception (``raise … from``), so the
  traceback in Flower, in Celery's ``task-failed`` event and in the worker log is the tool's own.
  A pack raises :class:`~aethergraph.errors.NodesFailedError` listing which of its nodes failed.

A message the client revoked (its run was cancelled) raises Celery's ``Ignore``: Celery has
announced it REVOKED already, and what the interrupted tool reports is no failure of its.

Raising changes nothing else: the message is acknowledged either way (``task_acks_late`` with
``task_acks_on_failure_or_timeout``), and the client has its outcomes already.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery.exceptions import Ignore, Retry
from celery.utils.serialization import get_pickleable_exception

from aethergraph.errors import NodesFailedError, ToolError
from aethergraph.execution.base import NodeFailure
from aethergraph.execution.worker.outcomes import Finished

log = logging.getLogger("aethergraph.worker")

#: failed nodes a pack's error names one by one (the rest are counted)
NAMED_FAILURES = 10


def will_retry(meta: dict[str, Any], failure: NodeFailure) -> bool:
    """Will the client send this node again? (the scheduler's own rule, with its policy)"""
    attempt = int(meta.get("attempt") or 1)
    return failure.retryable and attempt <= int(meta.get("retries") or 0)


def revoked(tool: str, task_id: str) -> None:
    """The client revoked this message while it ran: Celery shows it REVOKED, nothing more."""
    log.info("message %s (%s) was revoked by its client while it ran", task_id, tool)
    raise Ignore()


def _was_revoked(f: Finished) -> bool:
    """Did the soft-limit signal stop a node that has no timeout? Only a revoke sends it."""
    failure = f.outcome.failure
    return (
        failure is not None
        and failure.exc_type.endswith("SoftTimeLimitExceeded")
        and not f.meta.get("timeout")
    )


def summary(done: Sequence[Finished]) -> str:
    """A successful message's Celery result: its node(s) and run, as one short line (a string:
    Celery formats every result for its events and logs, and a dict costs it 5x more)."""
    runs = ", ".join(sorted({str(f.meta.get("run_id")) for f in done}))
    if len(done) == 1:
        return f"{done[0].meta.get('node_id')} of run {runs}: done"
    return f"{len(done)} nodes of run {runs}: done"


def node_error(tool: str, finished: Finished) -> ToolError:
    """The error a failed node's task raises: the node, its run, the remote exception."""
    failure = finished.outcome.failure
    assert failure is not None
    meta = finished.meta
    return ToolError(
        node_id=str(meta.get("node_id")),
        tool=tool,
        exc_type=failure.exc_type,
        message=failure.message,
        traceback=failure.traceback,
        run_id=str(meta.get("run_id") or ""),
        attempts=int(meta.get("attempt") or 1),
    )


def _describe(f: Finished) -> str:
    failure = f.outcome.failure
    assert failure is not None
    return f"{f.meta.get('node_id')} ({failure.exc_type.rsplit('.', 1)[-1]}: {failure.message})"


def pack_error(tool: str, done: Sequence[Finished], failed: Sequence[Finished]) -> NodesFailedError:
    """The error a pack with failed nodes raises: which of its nodes failed, and why."""
    named = ", ".join(_describe(f) for f in failed[:NAMED_FAILURES])
    more = f" and {len(failed) - NAMED_FAILURES} more" if len(failed) > NAMED_FAILURES else ""
    runs = sorted({str(f.meta.get("run_id")) for f in done})
    return NodesFailedError(
        f"{len(failed)} of {len(done)} nodes of tool {tool!r} in this message failed (run "
        f"{', '.join(runs)}): {named}{more}",
        node_ids=[str(f.meta.get("node_id")) for f in failed],
        run_ids=runs,
    )


def report(tool: str, done: Sequence[Finished]) -> str:
    """The task's result for a message whose outcomes are pushed — or raise its failure.

    ``done``: every finished attempt of the message (one node, or a pack's nodes).
    """
    if not done:  # a pack whose client went away before its first node: nothing ran
        return "no node ran: the client left"
    failed = [f for f in done if f.outcome.failure is not None]
    if failed and len(done) == 1 and _was_revoked(failed[0]):
        revoked(tool, str(failed[0].task_id))
    if not failed:
        return summary(done)
    first = failed[0]
    failure = first.outcome.failure
    assert failure is not None
    error: Exception = node_error(tool, first) if len(done) == 1 else pack_error(tool, done, failed)
    cause = failure.original if failure.original is not None else None
    if all(will_retry(f.meta, f.outcome.failure) for f in failed if f.outcome.failure):
        attempt = int(first.meta.get("attempt") or 1)
        retry = Retry(
            f"attempt {attempt} failed; the client sends it again: {error}",
            exc=get_pickleable_exception(error),
        )
        raise retry from cause
    raise error from cause
