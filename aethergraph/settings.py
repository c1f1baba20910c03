"""Typed settings: the only place that reads the environment.

Every knob is an ``AETHERGRAPH_*`` environment variable validated by pydantic, so a typo in a
value fails at start-up with a message naming the variable instead of surfacing later as odd
behaviour.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aethergraph.errors import ConfigurationError


def _default_artifacts_dir() -> Path:
    return Path.home() / ".cache" / "aethergraph" / "artifacts"


class Settings(BaseSettings):
    """AetherGraph configuration, read from ``AETHERGRAPH_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AETHERGRAPH_", extra="ignore")

    executor: Literal["local"] = Field(
        default="local", description="Default executor for run()/run_async()."
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Default per-run limit of nodes running at once."
    )
    artifacts_dir: Path = Field(
        default_factory=_default_artifacts_dir,
        description="Root of the local content-addressed artifact store.",
    )
    channel: Literal["console", "null"] = Field(
        default="console", description="Where context.channel() messages go by default."
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Generation-0 GC threshold while graphs run (0: leave the collector alone).",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (call ``reload_settings()`` after changing env)."""
    try:
        return Settings()
    except ValidationError as exc:  # pragma: no cover - exercised via reload_settings in tests
        raise ConfigurationError(
            f"invalid AETHERGRAPH_* environment settings:\n{exc}\n"
            "Fix or unset the variables named above."
        ) from exc


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again."""
    get_settings.cache_clear()
    return get_settings()
