"""Command-line options every ``aethergraph`` command shares (``-b/--broker``), in one place.

Its own module so that ``cli`` (which starts ``worker_cli`` lazily, as that imports Celery) and
``worker_cli`` both use it without importing each other.
"""

from __future__ import annotations

import argparse

from aethergraph.errors import ConfigurationError
from aethergraph.settings import Settings, check_broker_url, get_settings


def broker_option(parser: argparse._ActionsContainer) -> None:
    """``-b/--broker URL``, as on ``celery``: the broker for this command only."""
    parser.add_argument(
        "-b",
        "--broker",
        default=None,
        metavar="URL",
        help="Redis URL of the broker, overriding AETHERGRAPH_BROKER_URL for this command",
    )


def command_settings(broker: str | None) -> Settings:
    """The settings of one command: the environment's, with ``-b/--broker`` applied.

    The override goes into this command's own :class:`Settings` object (validated like the
    variable), never into ``os.environ``: the process's settings stay what the environment says.
    """
    settings = get_settings()
    if broker is None:
        return settings
    try:
        check_broker_url(broker)
    except ConfigurationError as exc:
        raise ConfigurationError(f"-b/--broker {exc}") from exc
    return settings.updated(broker_url=broker)
