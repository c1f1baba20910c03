"""The client side of distributed execution: tool nodes as Celery tasks over Redis.

One concept per module (the facade, :class:`CeleryExecutor`, wires them together):

* ``executor``  — the ``Executor`` facade: lifecycle, submit / cancel, the run's built-ins;
* ``dispatch``  — outbox, waiting for a worker, packing, the raw pipelined publisher;
* ``inflight``  — the table of published nodes awaiting an outcome;
* ``results``   — the result listener and the timeout backstop;
* ``lost``      — the bound for nodes whose message vanished from the broker;
* ``discovery`` — which live workers serve which tools (an index, never ``SCAN``);
* ``follow``    — Pub/Sub following of runs: workers' channel messages and logs, replayed here;
* ``revoke``    — batched revokes, flushed before the process exits;
* ``broker``    — the Redis clients and the broker-outage bound;
* ``background``— the executor's background tasks: referenced, and their failures logged.

The worker side lives in ``aethergraph.execution.worker``; the messages between the two in
``aethergraph.execution.wire``.
"""

from __future__ import annotations

from aethergraph.execution.celery.executor import CeleryExecutor

__all__ = ["CeleryExecutor"]
