"""Scheduling layer: readiness, concurrency limits, retries, cancellation and events.

Knows nothing about where nodes run: it drives any :class:`~aethergraph.execution.base.Executor`.
"""
