"""Typed settings: the only place that reads the environment.

Every knob is an ``AETHERGRAPH_*`` environment variable validated by pydantic, so a typo in a
value fails at start-up with a message naming the variable instead of surfacing later as odd
behaviour.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from kombu.utils.url import maybe_sanitize_url
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aethergraph.errors import ConfigurationError
from aethergraph.keys import check_namespace
from aethergraph.redis_clients import parse_sentinel

_MASK = "***"
_URL_FIELDS = frozenset({"broker_url", "result_backend"})
_REDIS_URL_FORMS = (
    "redis://[[user]:password@]host:port/db, rediss://… for TLS, unix:///path/to.sock, or "
    "sentinel://[[user]:password@]host:port[;sentinel://…]/db?master_name=NAME for Sentinel"
)


def redact_url(url: str) -> str:
    """``url`` with its password masked as ``***``: the one way AetherGraph shows a URL.

    Every error message, ``repr`` and log line that shows a broker or Redis URL goes through
    here, so a password never reaches a terminal, a log file or a bug report. Parsing is kombu's
    ``maybe_sanitize_url`` (what Celery itself uses for its banner), so we agree with Celery on
    what the credentials are; it also drops the query string, which is where a
    ``unix://…?password=`` keeps its secret. kombu only masks what it can parse as a URL, and an
    *invalid* URL is exactly what an error message has to show: when kombu cannot parse it
    (no ``://``, a non-numeric port) everything before the last ``@`` after the scheme is
    masked instead, because that is where credentials sit in anything URL-shaped.
    """
    if ";" in url and url.startswith("sentinel://"):  # one URL per Sentinel
        return ";".join(redact_url(part) for part in url.split(";"))
    if "://" in url:
        try:
            return str(maybe_sanitize_url(url, mask=_MASK))
        except ValueError:
            pass  # malformed (e.g. a port that is not a number): mask by hand below
    head, at, tail = url.rpartition("@")
    if not at:
        return url  # no credentials anywhere
    scheme, sep, _credentials = head.partition("://")
    return f"{scheme}{sep}{_MASK}@{tail}" if sep else f"{_MASK}@{tail}"


def check_broker_url(value: str | None) -> str | None:
    """``value`` if it is a Redis URL (``None`` for unset or empty), else a
    :class:`ConfigurationError` that shows the URL redacted and the accepted forms."""
    if value is None or value == "":
        return None
    if value.startswith("sentinel://"):
        parse_sentinel(value)  # its own clear errors
        return value
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"must be a Redis URL ({_REDIS_URL_FORMS}), got {redact_url(value)!r}"
        )
    return value


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
        # two heartbeat TTLs (execution/wire.py): workers re-score the messages they hold every
        # beat, so a timeout this long can only ever take back a dead worker's messages
        ge=12,
        description="Seconds a message whose worker stopped heartbeating stays held before "
        "kombu's own sweep puts it back (a backstop: clients take back a dead worker's messages "
        "within seconds); it never applies to a message a live worker runs, however long.",
    )
    result_ttl: float = Field(
        default=86400.0, gt=0, description="Seconds results and run events are kept in Redis."
    )
    offload_threshold: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Bytes above which a value travels through the artifact store by reference.",
    )
    offload_ttl: float = Field(
        default=21600.0,
        gt=0,
        description="Seconds at most a client's offloaded node argument stays in Redis (a "
        "backstop: it is deleted once its run has no node in flight); keep it above the longest "
        "a message may wait in a queue.",
    )
    worker_wait: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a node waits for a live worker serving its tool before failing.",
    )
    broker_outage_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds the broker may stay unreachable before the nodes waiting on it fail "
        "with BrokerUnavailableError (shorter blips are retried with backoff).",
    )
    lost_message_check: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between checks that dispatched Celery messages still exist in the "
        "broker (queued or held by a worker); the nodes of a message that vanished are sent "
        "again.",
    )
    client_lease: float = Field(
        default=30.0,
        ge=1,
        description="Seconds after a client died (no clean close) before workers stop starting "
        "its queued nodes; the client renews its lease every third of that.",
    )
    stop_grace: float = Field(
        default=25.0,
        ge=0,
        description="Workers: seconds running nodes get to finish after SIGTERM before the "
        "worker hands their messages back to the clients (keep it below the delay before your "
        "platform's SIGKILL: Kubernetes' terminationGracePeriodSeconds, Slurm's --signal lead).",
    )
    max_worker_kills: int = Field(
        default=3,
        ge=1,
        description="Worker deaths a node may cause while it runs before it fails with "
        "WorkerKilledError instead of being sent again (a poison node); also how often a "
        "node's lost message is sent again before it fails with NodeLostError.",
    )
    max_pack: int = Field(
        default=64,
        ge=1,
        description="Most nodes of one tool sent in one Celery message when many are ready at "
        "once (1: one message per node).",
    )
    async_concurrency: int = Field(
        default=1,
        ge=1,
        description="Workers: async nodes of one Celery message (a pack) run at once per slot "
        "(1: one after another, so a worker never runs more nodes than its -c slots).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Workers: serve Prometheus metrics on this port (/metrics; unset: off). "
        "Each worker on a host needs its own port.",
    )
    ship_code: bool = Field(
        default=False,
        description="Clients: send the code of tools defined in __main__ (notebook cells, a "
        "script's main module) to workers started with --accept-code, through Redis (never in "
        "messages). A LocalCluster with its own Redis turns it on; on a shared broker only "
        "this setting does (docs/notebooks.md).",
    )
    accept_code: bool = Field(
        default=False,
        description="Workers: run tools whose code a client shipped (they unpickle code read "
        "from the broker: only for a broker no one else can write to).",
    )
    source_mismatch: Literal["fail", "warn"] = Field(
        default="warn",
        description="Workers: a node whose client has a different source of its tool than the "
        "worker fails with ToolCodeError ('fail', a LocalCluster's setting) or runs with a "
        "warning in the worker log ('warn': rolling upgrades).",
    )
    run_ttl: float = Field(
        default=86400.0,
        ge=0,
        description="Seconds a run's durable record (its nodes' states and outcomes, in Redis) "
        "is kept after its last change, so that it can be resumed, reattached or listed "
        "(aethergraph runs); 0: keep no records (docs/notebooks.md#durable-runs).",
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

    def __init__(self, **values: Any) -> None:
        """Read the environment (``values`` win over it) and validate everything.

        Invalid settings raise :class:`ConfigurationError` instead of pydantic's
        ``ValidationError``: one error type for every bad setting, and a message that never
        contains a password (see :func:`settings_error`).
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            error = settings_error(exc, "invalid AETHERGRAPH_* settings", given=values)
        else:
            return
        raise error  # outside the except: no __context__ holding pydantic's unredacted message

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return check_broker_url(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        # the same rule as Keys, checked here so a bad value fails at load, naming the variable
        return check_namespace(value)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr(settings) ends up in logs and bug reports: never with a password in it
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    def updated(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, validated exactly as if they came from the environment.

        This is how a command-line flag such as ``--broker`` overrides a setting: explicitly, for
        the caller that asked, without writing to ``os.environ`` (which would leak the override
        into everything else in the process). ``model_copy(update=...)`` alone would skip
        validation, so the changes are validated first and then copied in.
        """
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {unknown}; known: {sorted(type(self).model_fields)}"
            )
        # every field given explicitly, so the environment plays no part in the check
        checked = type(self)(**{**self.model_dump(), **changes})
        return self.model_copy(update={name: getattr(checked, name) for name in changes})

    @property
    def effective_result_backend(self) -> str | None:
        return self.result_backend or self.broker_url

    @property
    def effective_executor(self) -> str:
        if self.executor is not None:
            return self.executor
        return "celery" if self.broker_url else "local"


def settings_error(
    exc: ValidationError, what: str, *, given: Collection[str] = ()
) -> ConfigurationError:
    """A :class:`ConfigurationError` naming each bad setting and why.

    A setting read from the environment is named by its ``AETHERGRAPH_*`` variable, one in
    ``given`` (passed in code, or by a command-line flag) by its field name. pydantic's own
    message is not used because it prints every rejected input in clear, and a rejected broker
    URL usually carries a password: inputs are shown redacted for URL fields (the validator puts
    the redacted URL in its message) and as given for the others.
    """
    lines = []
    for error in exc.errors(include_url=False, include_context=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        label = name if name in given else f"AETHERGRAPH_{name.upper()}"
        message = str(error["msg"]).removeprefix("Value error, ")
        if name not in _URL_FIELDS and "input" in error and repr(error["input"]) not in message:
            message += f" (got {error['input']!r})"
        lines.append(f"  {label}: {message}")
    return ConfigurationError(
        f"{what}:\n" + "\n".join(lines) + "\nFix (or unset) the settings named above."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (call ``reload_settings()`` after changing env)."""
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again."""
    get_settings.cache_clear()
    return get_settings()
