"""Typed settings: the only place that reads the environment.

Every knob is an ``AETHERGRAPH_*`` environment variable validated by pydantic, so a typo in a
value fails at start-up with a message naming the variable instead of surfacing later as odd
behaviour.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aethergraph.errors import ConfigurationError


def _default_artifacts_dir() -> Path:
    return Path.home() / ".cache" / "aethergraph" / "artifacts"


class Settings(BaseSettings):
    """AetherGraph configuration, read from ``AETHERGRAPH_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AETHERGRAPH_", extra="ignore")

    executor: Literal["local", "celery"] | None = Field(
        default=None,
        description="Default executor for run()/run_async(): 'local', 'celery'; unset: 'celery' "
        "when a broker URL is configured, else 'local'.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Redis URL of the Celery broker (redis://, rediss://, with password if any).",
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend URL; defaults to the broker URL."
    )
    namespace: str = Field(
        default="ag", description="Prefix of every Redis key AetherGraph writes (see keys.py)."
    )
    visibility_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds before Redis redelivers an unacknowledged task; keep it above the "
        "longest tool run.",
    )
    result_ttl: float = Field(
        default=86400.0, gt=0, description="Seconds results and run events are kept in Redis."
    )
    offload_threshold: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Bytes above which a value travels through the artifact store by reference.",
    )
    worker_wait: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a node waits for a live worker serving its tool before failing.",
    )
    max_pack: int = Field(
        default=64,
        ge=1,
        description="Most nodes of one tool sent in one Celery message when many are ready at "
        "once (1: one message per node).",
    )
    artifacts_backend: Literal["auto", "filesystem", "redis"] = Field(
        default="auto",
        description="Artifact store: 'auto' is Redis when distributed, the filesystem otherwise.",
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

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"must be a Redis URL (redis://[:password@]host:port/db, rediss:// for TLS, or "
                f"unix:///path/to.sock), got {value.split('@')[-1]!r}"
            )
        return value

    @property
    def effective_result_backend(self) -> str | None:
        return self.result_backend or self.broker_url

    @property
    def effective_executor(self) -> str:
        if self.executor is not None:
            return self.executor
        return "celery" if self.broker_url else "local"


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
