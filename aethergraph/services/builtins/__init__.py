"""The built-in context services: ``channel``, ``memory``, ``kv`` and ``artifacts``.

Each is an abstract, backend-neutral interface plus an in-process / local-filesystem
implementation, so a distributed backend can replace it without changing node code.
"""
