"""Graph spec layer: tool specs, the TaskGraph, references between nodes, export formats.

Plain data; knows nothing about how or where nodes run.
"""
