"""Custom-service runtime: the ``Service`` base class and the per-process service registry."""
