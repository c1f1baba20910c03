"""The one error hierarchy of AetherGraph.

Every error the library raises on purpose derives from :class:`AetherGraphError`, so callers can
catch everything of ours with one ``except``. Where a standard exception type already says what
kind of mistake it is (a missing output is a ``ValueError``, an unknown service an
``AttributeError``), our class derives from that type too, so existing ``except`` clauses and the
seed API's promises ("a missing key raises ``ValueError``") keep working.

Messages say what was wrong *and* how to fix it. Every class is listed in ``__all__`` (one list,
kept sorted) and documented in docs/errors.md.
"""

from __future__ import annotations

from typing import Any


class AetherGraphError(Exception):
    """Base class of every error raised by AetherGraph."""


class ConfigurationError(AetherGraphError, ValueError):
    """A setting, decorator option or entry-point argument is invalid."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """An entry-point argument has the wrong type (for example a listener that is not callable).

    It is a :class:`ConfigurationError` like every other bad argument, and also a ``TypeError``
    because that is what Python itself raises for a value of the wrong type, and what callers
    caught before this class existed.
    """


class CodecError(AetherGraphError, TypeError, ValueError):
    """A value could not be encoded, or a message could not be decoded.

    Both builtin bases on purpose, mirroring :mod:`json`: a value of a type the codec does not
    support is a ``TypeError`` (as in ``json.dumps``), malformed data is a ``ValueError`` (as in
    ``json.loads``). One class covers both, so ``except TypeError`` (what this class was before)
    and ``except ValueError`` (what JSON code expects of bad data) both keep catching it.

    ``path`` says where in the structure the bad value was (e.g. ``args['rows'][3]['when']``).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class GraphInputError(AetherGraphError, TypeError):
    """A graph was called with missing, unknown or malformed inputs."""


class ToolCallError(AetherGraphError, TypeError):
    """A ``@tool`` was called with arguments that do not match its signature."""


class OutputContractError(AetherGraphError, ValueError):
    """A tool or graph did not return what it declared in ``outputs=[...]``."""


class UnknownOutputError(AetherGraphError, KeyError):
    """A handle was asked for an output its tool does not produce."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class GraphSpecError(AetherGraphError, ValueError):
    """A TaskGraph cannot be built or loaded as given (a duplicate node, an unknown dependency,
    an unsupported dump format)."""


class RegistryLookupError(AetherGraphError, LookupError):
    """Nothing is registered under the requested namespace / name / version."""


class ServiceError(AetherGraphError):
    """Base class for errors about context services."""


class UnknownServiceError(ServiceError, AttributeError):
    """``context.<name>()`` was used for a name no service is registered under."""


class ServiceRegistrationError(ServiceError, ValueError):
    """A service could not be registered (bad name, or a built-in name)."""


class NoActiveContextError(ServiceError, RuntimeError):
    """``Service.ctx()`` was called outside of any running node or graph body."""


class ServiceUsageError(ServiceError, ValueError, TypeError):
    """A service was called with a bad argument (a built-in's kv key, a channel message of the
    wrong type, a service that is not callable). Both a ``ValueError`` and a ``TypeError``, as
    the argument checks it replaced were one or the other."""


class ArtifactNotFoundError(AetherGraphError, FileNotFoundError):
    """An artifact URI does not name anything in the artifact store."""


class ArtifactTooLargeError(AetherGraphError, ValueError):
    """Data is bigger than an artifact store accepts."""


class RuntimeUsageError(AetherGraphError, RuntimeError):
    """An API was used where it cannot work (for example a blocking wait on the runtime thread)."""


class NodeTimeoutError(AetherGraphError, TimeoutError):
    """A node ran longer than its tool's ``timeout``."""


class WorkerUnavailableError(AetherGraphError, RuntimeError):
    """No live worker serves a node's tool on its queue (start one; the message says how)."""


class BrokerUnavailableError(AetherGraphError, ConnectionError):
    """The broker (Redis) could not be reached for longer than the configured bound."""


class NodeLostError(AetherGraphError, RuntimeError):
    """A dispatched node's message vanished from the broker again and again (each loss is
    re-sent; this ends it after ``AETHERGRAPH_MAX_WORKER_KILLS`` losses)."""


class WorkerKilledError(AetherGraphError, RuntimeError):
    """A node was running when its worker died, ``AETHERGRAPH_MAX_WORKER_KILLS`` times: a poison
    node (a crash, an out-of-memory kill), failed instead of killing the pool for ever."""


class ToolCodeError(AetherGraphError, RuntimeError):
    """A worker does not have the code of a node's tool that its client has: the tool was
    edited after the worker imported it (restart the workers: ``cluster.restart()``), or the
    code a client shipped from a notebook could not be read or loaded there."""


class RunFailedError(AetherGraphError, RuntimeError):
    """A run watched with :func:`aethergraph.attach` failed, or was abandoned by the client
    that ran it (the message says how to resume it)."""


class InternalError(AetherGraphError, RuntimeError):
    """A bug inside AetherGraph: the run fails with this (and the original traceback) instead
    of hanging. Please report it with the traceback."""


class RunCancelledError(AetherGraphError):
    """The run was cancelled before it finished."""

    def __init__(self, run_id: str, reason: str = "cancelled") -> None:
        super().__init__(f"run {run_id} was {reason}")
        self.run_id = run_id
        self.reason = reason


class ToolError(AetherGraphError):
    """A tool node failed.

    Raised wherever the failed node's value is used (``await handle``, a ref in an f-string, the
    run's result). It carries what is needed to debug the failure even when the tool ran in
    another process: the original exception's type name, message and formatted traceback, plus the
    node and run it belongs to. When the tool ran in this process the original exception is also
    chained as ``__cause__`` and kept in :attr:`original`.
    """

    def __init__(
        self,
        *,
        node_id: str,
        tool: str,
        exc_type: str,
        message: str,
        traceback: str = "",
        run_id: str = "",
        attempts: int = 1,
        original: BaseException | None = None,
        upstream: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.tool = tool
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.run_id = run_id
        self.attempts = attempts
        self.original = original
        self.upstream = upstream
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.upstream:
            return (
                f"node {self.node_id!r} (tool {self.tool!r}) was skipped because upstream node "
                f"{self.upstream!r} failed: {self.exc_type}: {self.message}"
            )
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"node {self.node_id!r} (tool {self.tool!r}) failed{tries}: {self.exc_type}: " + (
            self.message
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__: teach pickle/copy how to rebuild us.
        return (_rebuild_tool_error, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible description (used in graph dumps and on the wire)."""
        return {
            "node_id": self.node_id,
            "tool": self.tool,
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.traceback,
            "run_id": self.run_id,
            "attempts": self.attempts,
            "upstream": self.upstream,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolError:
        return cls(
            node_id=str(data["node_id"]),
            tool=str(data["tool"]),
            exc_type=str(data["exc_type"]),
            message=str(data["message"]),
            traceback=str(data.get("traceback", "")),
            run_id=str(data.get("run_id", "")),
            attempts=int(data.get("attempts", 1)),
            upstream=data.get("upstream"),
        )


def _rebuild_tool_error(data: dict[str, Any]) -> ToolError:
    return ToolError.from_dict(data)


class NodesFailedError(AetherGraphError):
    """Some nodes of one Celery message (a pack of nodes of one tool) failed.

    Raised only on a worker, as the message's Celery task ends, so that Flower, Celery's events
    and the worker log show the message as failed and name the nodes; a client sees each node's
    own :class:`ToolError` instead.
    """

    def __init__(self, message: str, *, node_ids: list[str], run_ids: list[str]) -> None:
        super().__init__(message)
        self.node_ids = node_ids
        self.run_ids = run_ids

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_nodes_failed, (str(self), self.node_ids, self.run_ids))


def _rebuild_nodes_failed(
    message: str, node_ids: list[str], run_ids: list[str]
) -> NodesFailedError:
    return NodesFailedError(message, node_ids=node_ids, run_ids=run_ids)


def qualified_name(exc: BaseException) -> str:
    """``module.Qualname`` of an exception's type, without the ``builtins.`` prefix."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


__all__ = [
    "AetherGraphError",
    "ArtifactNotFoundError",
    "ArtifactTooLargeError",
    "BrokerUnavailableError",
    "CodecError",
    "ConfigurationError",
    "ConfigurationTypeError",
    "GraphInputError",
    "GraphSpecError",
    "InternalError",
    "NoActiveContextError",
    "NodeLostError",
    "NodeTimeoutError",
    "NodesFailedError",
    "OutputContractError",
    "RegistryLookupError",
    "RunCancelledError",
    "RunFailedError",
    "RuntimeUsageError",
    "ServiceError",
    "ServiceRegistrationError",
    "ServiceUsageError",
    "ToolCallError",
    "ToolCodeError",
    "ToolError",
    "UnknownOutputError",
    "UnknownServiceError",
    "WorkerKilledError",
    "WorkerUnavailableError",
    "qualified_name",
]
