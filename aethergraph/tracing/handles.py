"""``NodeHandle`` and ``Ref``: what a ``@tool`` call inside a graph body gives back.

A handle stands for a node's outputs, a ref for one value inside them. Passed into another tool
(also nested in lists and dicts) they wire an edge, and the downstream tool receives the plain
value. Awaited, they give the value. Used as a value in plain Python — an f-string, a
comparison, arithmetic, ``len``, iteration, ``bool`` — a ref waits for its node transparently;
this is safe because nodes run on the runtime thread, never on the body's own thread or loop.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from aethergraph import runtime_loop
from aethergraph.errors import RuntimeUsageError, UnknownOutputError
from aethergraph.graph.refs import ATOMIC_TYPES, PathItem
from aethergraph.offload import contains_offloaded, materialize
from aethergraph.scheduling.node_state import RunRef

if TYPE_CHECKING:
    from aethergraph.scheduling.node_state import NodeState


def _wait_sync(state: NodeState) -> None:
    if not state.is_finished:
        if runtime_loop.in_runtime_thread():
            raise RuntimeUsageError(
                f"the value of node {state.node.node_id!r} was used synchronously on the "
                "AetherGraph runtime thread, which would deadlock; use 'await' here"
            )
        state.wait_sync()


class _Bound(RunRef):
    """Shared part of handles and refs: the run and node they belong to, and its outputs.

    Offloaded values (large outputs kept in the artifact store) are loaded from *the run's*
    artifact store — the executor's shared one on Celery — when the value is used.
    """

    __slots__ = ()

    def _value(self) -> Any:
        _wait_sync(self._state)
        value = self._extract(self._outputs())
        if type(value) not in ATOMIC_TYPES and contains_offloaded(value):
            value = runtime_loop.run_sync(materialize(value, self._run.builtins.artifacts))
        return value

    def _extract(self, outputs: dict[str, Any]) -> Any:
        if not self._ref_path:
            return dict(outputs)
        try:
            return self._ref_extract(outputs)
        except (KeyError, IndexError, TypeError) as exc:
            raise UnknownOutputError(
                f"node {self._ref_node!r} (tool {self._state.node.tool!r}) has no value at "
                f"{self._ref_describe()}: {exc!r}; its outputs are {sorted(outputs)}"
            ) from None

    async def _value_async(self) -> Any:
        state = self._state
        if not state.is_finished:
            await state.wait_async()
        value = self._extract(self._outputs())
        if type(value) not in ATOMIC_TYPES and contains_offloaded(value):
            store = self._run.builtins.artifacts
            value = await runtime_loop.run_here(materialize(value, store))
        return value

    def __await__(self) -> Generator[Any, None, Any]:
        return self._value_async().__await__()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"{type(self).__name__} {self._ref_describe()} cannot be pickled: it is a live handle "
            "of a running graph. Await it to get the value."
        )


class NodeHandle(_Bound):
    """The outputs of one node: ``handle["key"]`` / ``handle.key`` give a :class:`Ref`."""

    __slots__ = ()

    @property
    def node_id(self) -> str:
        """The id of the node in the run's TaskGraph (the one attribute that is not an output)."""
        return self._ref_node

    def __getitem__(self, key: str) -> Ref:
        declared = self._state.tool.outputs
        if declared and key not in declared:
            raise UnknownOutputError(
                f"tool {self._state.tool.name!r} declares outputs {list(declared)}; "
                f"{key!r} is not one of them"
            )
        return Ref(self._run, self._state, self._cell, (key,))

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except UnknownOutputError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            "a NodeHandle is not iterable; iterate over its outputs with "
            "'(await handle).items()' or pick one with handle['key']"
        )

    def __str__(self) -> str:
        return str(self._value())

    def __format__(self, spec: str) -> str:
        return format(self._value(), spec)

    def __repr__(self) -> str:
        return f"<NodeHandle {self._ref_node} ({self._state.node.status.value})>"


class Ref(_Bound):
    """One value produced by a node; behaves like that value when used in plain Python."""

    __slots__ = ()

    def __getitem__(self, key: PathItem) -> Ref:
        return Ref(self._run, self._state, self._cell, (*self._ref_path, key))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._value(), name)

    def __repr__(self) -> str:
        state = self._state
        if state.is_finished and state.error is None:
            try:
                return f"<Ref {self._ref_describe()} = {self._value()!r}>"
            except Exception:
                pass
        return f"<Ref {self._ref_describe()} ({state.node.status.value})>"

    # transparent conversions and container protocol
    def __str__(self) -> str:
        return str(self._value())

    def __format__(self, spec: str) -> str:
        return format(self._value(), spec)

    def __bool__(self) -> bool:
        return bool(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._value())

    def __contains__(self, item: object) -> bool:
        return _plain(item) in self._value()

    def __int__(self) -> int:
        return int(self._value())

    def __float__(self) -> float:
        return float(self._value())

    def __complex__(self) -> complex:
        return complex(self._value())

    def __index__(self) -> int:
        return operator.index(self._value())

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self._value(), ndigits)

    def __trunc__(self) -> Any:
        return math.trunc(self._value())

    def __floor__(self) -> Any:
        return math.floor(self._value())

    def __ceil__(self) -> Any:
        return math.ceil(self._value())

    __hash__ = object.__hash__


def _plain(value: Any) -> Any:
    return value._value() if isinstance(value, _Bound) else value


def _binary(op: Callable[[Any, Any], Any]) -> Callable[[Ref, Any], Any]:
    def method(self: Ref, other: Any) -> Any:
        return op(self._value(), _plain(other))

    return method


def _reflected(op: Callable[[Any, Any], Any]) -> Callable[[Ref, Any], Any]:
    def method(self: Ref, other: Any) -> Any:
        return op(_plain(other), self._value())

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[[Ref], Any]:
    def method(self: Ref) -> Any:
        return op(self._value())

    return method


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
}
for _name, _op in _BINARY.items():
    setattr(Ref, f"__{_name}__", _binary(_op))
    setattr(Ref, f"__r{_name}__", _reflected(_op))
for _name, _op in {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}.items():
    setattr(Ref, f"__{_name}__", _binary(_op))
_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": operator.abs,
    "invert": operator.invert,
}
for _name, _uop in _UNARY.items():
    setattr(Ref, f"__{_name}__", _unary(_uop))
setattr(Ref, "__divmod__", _binary(divmod))  # noqa: B010 - generated dunders
setattr(Ref, "__rdivmod__", _reflected(divmod))  # noqa: B010

__all__ = ["NodeHandle", "Ref"]
