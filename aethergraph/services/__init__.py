"""Context services: the built-ins (logger, channel, memory, artifacts, kv) and custom services."""
