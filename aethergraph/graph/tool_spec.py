"""``ToolSpec``: everything the runtime needs to know to run one kind of node.

Built once per ``@tool`` at decoration time — signature facts are precomputed here so that the hot
paths (tracing 10^5 calls, running them) do no ``inspect`` work.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aethergraph.errors import ConfigurationError, OutputContractError, ToolCallError


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """How a tool's nodes are run: retries with exponential backoff, timeout, queue, and
    whether an earlier outcome of the same call may be reused (``cache``, for ``cache_ttl``
    seconds; ``scheduling/cache.py``)."""

    retries: int = 0
    retry_backoff: float = 0.5
    retry_backoff_max: float = 60.0
    retry_jitter: bool = True
    timeout: float | None = None
    queue: str | None = None
    cache: bool = False
    cache_ttl: float | None = 86400.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {self.retries!r}")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise ConfigurationError("retry_backoff and retry_backoff_max must be >= 0 seconds")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds or None, got {self.timeout!r}"
            )
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ConfigurationError(f"queue must be a non-empty string, got {self.queue!r}")
        if not isinstance(self.cache, bool):
            raise ConfigurationError(f"cache must be True or False, got {self.cache!r}")
        ttl = self.cache_ttl
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise ConfigurationError(f"cache_ttl must be seconds or None, got {ttl!r}")
        if ttl is not None and not ttl > 0:
            raise ConfigurationError(
                f"cache_ttl must be a positive number of seconds (None: no expiry), got {ttl!r}"
            )

    def backoff_delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1 = first retry): base * 2**(attempt-1), capped.

        With jitter the delay is drawn uniformly from [delay/2, delay] ("equal jitter"), so many
        nodes failing together do not retry in lockstep.
        """
        delay = min(self.retry_backoff * (2 ** max(attempt - 1, 0)), self.retry_backoff_max)
        if self.retry_jitter and delay > 0:
            delay = random.uniform(delay / 2, delay)
        return float(delay)


def _digest_source(name: str, version: str, fn: Callable[..., Any]) -> str:
    """Hash the function's own source (``inspect.getsource``; IPython keeps every cell's
    source for it), not the helpers it calls, as Prefect's task-source cache policy does. Where
    no source can be read (a function built with ``exec``), its compiled code stands in."""
    target = inspect.unwrap(fn)
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        text = _code_text(code) if isinstance(code, types.CodeType) else type(target).__qualname__
    return hashlib.sha256(f"{name}\0{version}\0{text}".encode()).hexdigest()[:16]


def _code_text(code: types.CodeType) -> str:
    """Compiled code as text that is the same in every process (nested code objects, whose
    ``repr`` holds a memory address, are spelled out recursively)."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return repr((code.co_code, consts, code.co_names, code.co_varnames))


class ToolSpec:
    """A tool: its function, declared outputs, policy and precomputed signature facts."""

    __slots__ = (
        "accepts_var_kw",
        "description",
        "fn",
        "in_main",
        "is_async",
        "name",
        "outputs",
        "params",
        "policy",
        "positional",
        "required",
        "source_digest",
        "version",
        "wants_context",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        version: str,
        outputs: tuple[str, ...] | None,
        policy: ToolPolicy,
    ) -> None:
        self.fn = fn
        self.name = name
        self.version = version
        self.outputs = outputs
        self.policy = policy
        self.description = inspect.getdoc(fn) or ""
        self.is_async = inspect.iscoroutinefunction(fn)
        sig = inspect.signature(fn)
        params: list[str] = []
        positional: list[str] = []
        required: set[str] = set()
        self.accepts_var_kw = False
        self.wants_context = False
        for p in sig.parameters.values():
            if p.name == "context":
                self.wants_context = True
                continue
            if p.kind is p.VAR_KEYWORD:
                self.accepts_var_kw = True
                continue
            if p.kind is p.VAR_POSITIONAL:
                raise ConfigurationError(
                    f"tool {name!r}: *{p.name} is not supported; tool inputs are named so that "
                    "graphs can wire and serialize them. Take a list parameter instead."
                )
            if p.kind is p.POSITIONAL_ONLY:
                raise ConfigurationError(
                    f"tool {name!r}: positional-only parameter {p.name!r} is not supported; "
                    "remove the '/' from the signature"
                )
            params.append(p.name)
            if p.kind is p.POSITIONAL_OR_KEYWORD:
                positional.append(p.name)
            if p.default is p.empty:
                required.add(p.name)
        self.params = frozenset(params)
        self.positional = tuple(positional)
        self.required = frozenset(required)
        #: a short hash of the name, version and source text: it tells two definitions of a
        #: tool apart (a cell run again with an edited body; a worker that imported the tools
        #: module before it was edited). Read now, at definition: the source file may change
        #: later while the code loaded from it does not.
        self.source_digest = _digest_source(name, version, fn)
        #: defined in ``__main__`` (a notebook cell, a script's main module): no worker can
        #: import it, so a LocalCluster ships its code (``execution/shipping.py``)
        self.in_main = getattr(inspect.unwrap(fn), "__module__", None) == "__main__"

    # -- calls -----------------------------------------------------------------------------
    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map a call's arguments to a ``{param: value}`` dict, validating them.

        A ``context=`` argument is dropped: the node gets its own context.
        """
        if args:
            if len(args) > len(self.positional):
                raise ToolCallError(
                    f"tool {self.name!r} takes {len(self.positional)} positional arguments "
                    f"({', '.join(self.positional) or 'none'}) but {len(args)} were given"
                )
            bound = dict(zip(self.positional, args, strict=False))
            for key in kwargs:
                if key in bound:
                    raise ToolCallError(f"tool {self.name!r} got multiple values for {key!r}")
            bound.update(kwargs)
        else:
            bound = dict(kwargs)
        if "context" in bound:
            del bound["context"]
        keys = bound.keys()
        if not self.accepts_var_kw and not keys <= self.params:
            unknown = sorted(keys - self.params)
            raise ToolCallError(
                f"tool {self.name!r} got unexpected argument(s) {unknown}; "
                f"it accepts {sorted(self.params)}"
            )
        if not self.required <= keys:
            missing = sorted(self.required - keys)
            raise ToolCallError(f"tool {self.name!r} is missing required argument(s) {missing}")
        return bound

    def normalize_outputs(self, value: Any) -> dict[str, Any]:
        """Turn a tool's return value into its outputs dict, enforcing declared outputs.

        A dict is the outputs (every declared key must be present; extra keys are kept). A
        non-dict is accepted when exactly one output is declared (it becomes that output), or
        when none is declared (it becomes ``result``; ``None`` becomes ``{}``).
        """
        outputs = self.outputs
        if type(value) is dict or isinstance(value, Mapping):
            result = dict(value)
            if outputs:
                for key in outputs:
                    if key not in result:
                        raise OutputContractError(
                            f"tool {self.name!r} declares outputs {list(outputs)} but its "
                            f"result has no key {key!r} (got keys {sorted(map(str, result))}); "
                            "return a dict with every declared output"
                        )
            return result
        if outputs:
            if len(outputs) == 1:
                return {outputs[0]: value}
            raise OutputContractError(
                f"tool {self.name!r} declares outputs {list(outputs)} but returned a value "
                f"of type {type(value).__name__}; return a dict with those keys"
            )
        return {} if value is None else {"result": value}

    def __repr__(self) -> str:
        return f"<ToolSpec {self.name}@{self.version}>"
