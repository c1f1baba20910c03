"""Hosting services: ``start_server()`` / ``stop_server()``.

In AetherGraph the process that runs graphs hosts its own services; there is no separate sidecar
to connect to. ``start_server()`` starts this process's runtime (the runtime thread) and calls
``start()`` on every registered service; services registered afterwards are started as they are
registered. ``stop_server()`` — or interpreter exit — calls ``close()`` on them. Without
``start_server()``, services are started lazily before the first run that follows their
registration, so both styles work.
"""

from __future__ import annotations

from types import TracebackType

from aethergraph import runtime_loop
from aethergraph.services.runtime.registry import ServiceRegistry, current_services


class Server:
    """Handle returned by :func:`start_server`; also a context manager that stops on exit."""

    def __init__(self, services: ServiceRegistry) -> None:
        self.services = services

    @property
    def running(self) -> bool:
        return self.services.serving

    def stop(self) -> None:
        stop_server()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server() -> Server:
    """Start the runtime and every registered service (idempotent)."""
    services = current_services()
    runtime_loop.run_sync(services.start_all())
    services.serving = True
    return Server(services)


def stop_server() -> None:
    """Close every started service; later runs start services again on demand."""
    services = current_services()
    services.serving = False
    runtime_loop.run_sync(services.close_all())
