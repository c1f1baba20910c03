"""References between nodes, as plain data.

``RefSpec(node_id, path)`` names a value produced by another node: the node's whole outputs dict
(``path == ()``) or an item inside it (``path == ("total",)``, ``("rows", 0)``). The tracing
layer's ``NodeHandle`` and ``Ref`` subclass it, so a graph built by tracing and a graph loaded
from JSON hold the same kind of object. Two walks over argument structures live here: finding
the refs (to wire edges) and substituting their values (just before a node runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

PathItem = str | int
#: values that can hold no reference: the walks below skip them without a call
ATOMIC_TYPES = frozenset({str, int, float, bool, type(None), bytes})


class RefBase:
    """A reference to (part of) another node's outputs — with no public attribute names.

    Runtime handles subclass this and turn unknown attribute names into output lookups
    (``handle.total``), so the base must not claim any public name. Code of this package reads
    ``_ref_node`` / ``_ref_path``; users read :class:`RefSpec`'s ``node_id`` / ``path``.
    """

    __slots__ = ("_ref_node", "_ref_path")

    def __init__(self, node_id: str, path: tuple[PathItem, ...] = ()) -> None:
        self._ref_node = node_id
        self._ref_path = path

    def _ref_extract(self, outputs: Mapping[str, Any]) -> Any:
        """The referenced value, given the producing node's outputs."""
        value: Any = outputs
        for item in self._ref_path:
            value = value[item]
        return value

    def _ref_describe(self) -> str:
        return self._ref_node + "".join(f"[{item!r}]" for item in self._ref_path)


class RefSpec(RefBase):
    """A reference as plain data: what a graph loaded from JSON holds in node inputs."""

    __slots__ = ()

    @property
    def node_id(self) -> str:
        return self._ref_node

    @property
    def path(self) -> tuple[PathItem, ...]:
        return self._ref_path

    def describe(self) -> str:
        return self._ref_describe()

    def __repr__(self) -> str:
        return f"RefSpec({self._ref_describe()})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RefSpec, (self._ref_node, self._ref_path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefSpec) and (self._ref_node, self._ref_path) == (
            other._ref_node,
            other._ref_path,
        )

    def __hash__(self) -> int:
        return hash((self._ref_node, self._ref_path))


def collect_refs(value: Any, out: list[RefBase]) -> None:
    """Append every reference in ``value`` (through dicts, lists, tuples, sets) to ``out``."""
    cls = type(value)
    if cls in ATOMIC_TYPES:
        return
    if isinstance(value, RefBase):
        out.append(value)
    elif cls is dict or cls is list or cls is tuple or isinstance(value, (dict, list, tuple)):
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            if type(item) not in ATOMIC_TYPES:
                collect_refs(item, out)
    elif isinstance(value, (set, frozenset)):
        for item in value:
            collect_refs(item, out)


def substitute(value: Any, lookup: Callable[[RefBase], Any]) -> Any:
    """A copy of ``value`` with every reference replaced by ``lookup(ref)``.

    Containers that hold no refs are returned as they are (not copied). One pass per container,
    plain values skipped without a call: this runs twice per node on the hot path.
    """
    cls = type(value)
    if cls in ATOMIC_TYPES:
        return value
    if isinstance(value, RefBase):
        return lookup(value)
    if isinstance(value, dict):
        changed = False
        new_d: dict[Any, Any] = {}
        for key, item in value.items():
            if type(item) not in ATOMIC_TYPES:
                new = lookup(item) if isinstance(item, RefBase) else substitute(item, lookup)
                if new is not item:
                    changed = True
                    item = new
            new_d[key] = item
        if not changed:
            return value
        return new_d if cls is dict else _rebuild(cls, new_d)
    if isinstance(value, (list, tuple, set, frozenset)):
        changed = False
        items: list[Any] = []
        for item in value:
            if type(item) not in ATOMIC_TYPES:
                new = lookup(item) if isinstance(item, RefBase) else substitute(item, lookup)
                if new is not item:
                    changed = True
                    item = new
            items.append(item)
        if not changed:
            return value
        if cls in (list, tuple, set, frozenset):
            return cls(items)
        return _rebuild(cls, items)
    return value


def _rebuild(cls: type, data: Any) -> Any:
    if hasattr(cls, "_make"):  # namedtuple
        return cls._make(data)
    try:
        return cls(data)
    except Exception:
        for base in (dict, list, tuple, set, frozenset):
            if issubclass(cls, base):
                return base(data)
        raise


# -- JSON encoding of argument structures (for TaskGraph.to_dict) ----------------------------


class OpaqueValue:
    """A value that a graph dump could only describe (its repr and type), as loaded back."""

    __slots__ = ("text", "type_name")

    def __init__(self, text: str, type_name: str) -> None:
        self.text = text
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.text}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpaqueValue) and (self.text, self.type_name) == (
            other.text,
            other.type_name,
        )

    def __hash__(self) -> int:
        return hash((self.text, self.type_name))


def encode_value(value: Any, max_repr: int = 200) -> Any:
    """JSON-compatible form of an argument structure; refs become ``{"$ref", "path"}``.

    Values JSON cannot hold are kept as ``{"$repr": ..., "$type": ...}`` previews: a graph dump
    describes a run, it is not a way to ship values (the codec does that).
    """
    cls = type(value)
    if cls in (str, int, bool, type(None)):
        return value
    if cls is float:
        return (
            value
            if value == value and value not in (float("inf"), float("-inf"))
            else {"$float": repr(value)}
        )
    if isinstance(value, RefBase):
        return {"$ref": value._ref_node, "path": list(value._ref_path)}
    if isinstance(value, dict):
        encoded = {str(k): encode_value(v, max_repr) for k, v in value.items()}
        if any(isinstance(k, str) and k.startswith("$") for k in encoded):
            return {"$dict": encoded}
        return encoded
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, max_repr) for v in value]
        return items if isinstance(value, list) else {"$tuple": items}
    if isinstance(value, OpaqueValue):
        return {"$repr": value.text, "$type": value.type_name}
    text = repr(value)
    if len(text) > max_repr:
        text = text[: max_repr - 3] + "..."
    return {"$repr": text, "$type": f"{cls.__module__}.{cls.__qualname__}"}


def decode_value(data: Any) -> Any:
    """Inverse of :func:`encode_value` (``$repr`` previews stay previews)."""
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if isinstance(data, dict):
        if "$ref" in data and set(data) <= {"$ref", "path"}:
            return RefSpec(str(data["$ref"]), tuple(data.get("path", ())))
        if set(data) == {"$dict"}:
            return {k: decode_value(v) for k, v in data["$dict"].items()}
        if set(data) == {"$tuple"}:
            return tuple(decode_value(v) for v in data["$tuple"])
        if set(data) == {"$float"}:
            return float(data["$float"])
        if set(data) == {"$repr", "$type"}:
            return OpaqueValue(str(data["$repr"]), str(data["$type"]))
        return {k: decode_value(v) for k, v in data.items()}
    return data
