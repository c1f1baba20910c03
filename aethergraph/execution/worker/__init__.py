"""The worker side of the Celery executor: what ``aethergraph worker`` runs in ``celery worker``.

One concept per module:

* ``loading``   — importing the ``--tools`` modules (the allowlist) and the ``--services`` hook;
* ``services``  — the worker process's own service registry and the forwarding of node logs;
* ``outcomes``  — arguments in, outcomes out: codec, artifact offload, pushes to the client;
* ``running``   — running one node or a pack of nodes, timed, within the worker's slots;
* ``started``   — telling a client which of its nodes are running (not just sent);
* ``tasks``     — one Celery task per tool, and failures for tasks this worker does not serve;
* ``heartbeat`` — liveness and what a worker serves, for client discovery;
* ``signals``   — the Celery signals that start and stop the parts;
* ``runtime``   — ``WorkerRuntime``, which assembles them for one worker.
"""

from aethergraph.execution.worker.loading import load_bootstrap, load_tools
from aethergraph.execution.worker.runtime import WorkerRuntime

__all__ = ["WorkerRuntime", "load_bootstrap", "load_tools"]
