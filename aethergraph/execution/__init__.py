"""Execution layer: executors run one node each. Knows nothing about graph bodies."""
