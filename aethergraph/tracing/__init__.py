"""Tracing layer: ``@tool``, ``@graph_fn``, handles and refs. Knows nothing about Celery/Redis."""
