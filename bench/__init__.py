"""AetherGraph benchmarks: ``python -m bench`` (``--quick`` for a smoke run)."""
