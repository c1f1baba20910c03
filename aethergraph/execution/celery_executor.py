"""Old import path of :class:`~aethergraph.execution.celery.CeleryExecutor` (kept for users)."""

from aethergraph.execution.celery.executor import CeleryExecutor as CeleryExecutor
