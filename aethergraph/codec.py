"""The typed JSON codec for every value that crosses a process boundary.

Tool arguments and results travel between client and Celery workers as JSON over Redis. Plain
JSON loses types (a tuple comes back as a list, ``datetime`` and ``bytes`` are not JSON at all)
and pickle would let whoever can write to Redis run code in our processes. So values are mapped
onto JSON here, with a few *tags*, and mapped back with their type intact.

Wire format: JSON-native values (str, int, finite float, bool, None, lists, dicts with str keys)
are sent as they are. Anything else becomes ``{"__ag__": <tag>, ...}``. A user dict that itself
has the key ``"__ag__"`` is escaped as ``{"__ag__": "dict", "v": {...}}``, so user data is never
mistaken for a tag.

Supported, type preserved: None, bool, int, float (nan/inf too), str, list, dict (any hashable
encodable keys), tuple, set, frozenset, bytes, bytearray (base64), datetime (naive and aware),
date, time, timedelta, Decimal, UUID, paths (a concrete path comes back as ``Path`` of the
receiving OS, pure paths keep their flavour), complex, members of Enums, pydantic models
(sent as ``model_dump(mode="json")``, re-validated with ``model_validate``), dataclasses and
NamedTuples. Enum, model, dataclass and NamedTuple classes must be defined at module top level.

Converted: instances of subclasses of the builtin types above (``OrderedDict``, ``Counter``,
a ``datetime`` subclass) arrive as the base type; an aware datetime keeps its UTC offset but its
tzinfo becomes a fixed ``datetime.timezone``.

Not supported (:class:`CodecError` naming the type and where it was): functions, lambdas,
generators, sockets, files, locks, classes, arbitrary objects, reference cycles.

Security: decoding never imports anything, and builds only the classes it is allowed to
(``decode(data, accepted=...)``: a message about a tool may name the classes of that tool's
signature and those registered with :func:`aethergraph.accepted_types.accept`; see
:mod:`aethergraph.accepted_types`). Class-based tags carry ``"module:Qualname"``; decode
resolves them only when the module is already in ``sys.modules``, looks the name up through
``__dict__`` (no module ``__getattr__`` hooks) and accepts the result only when it is the expected
kind of class. A message must never make a process import or run code it did not choose to.
The price: the process that decodes (the worker for arguments, the client for results) must
import the module that defines the class first — e.g. define models next to the tools using them.

Large values travel by reference: ``{"__ag__": "ref", "uri": ..., "size": ...}`` decodes to an
:class:`Offloaded` marker (and encodes back to the same ref). Putting values into the artifact
store and loading them back is :mod:`aethergraph.offload`'s job; this module stays pure.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import sys
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path, PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import Any

from pydantic import BaseModel

from aethergraph import accepted_types

# CodecError lives in errors.py with the rest of the hierarchy; re-exported here for old imports.
from aethergraph.errors import CodecError

TAG = "__ag__"

_SCALARS = frozenset({str, int, bool, type(None)})  # JSON-native as they are (float: not nan)
_JSON_SCALARS = _SCALARS | {float}
_MISSING = object()
#: the classes the decode in progress may build (None: any imported class of the right kind)
_accepted: ContextVar[frozenset[type] | None] = ContextVar(
    "aethergraph_codec_accepted", default=None
)
_FIX = (
    "Use JSON-compatible data (dict/list/str/int/float/bool/None), a pydantic model or bytes "
    "for tool arguments and outputs; save big or binary data with context.artifacts() and "
    "pass its URI."
)


class _Failure(Exception):
    """Internal: an encode failure on its way up, collecting path segments (innermost first)."""

    def __init__(self, reason: str, fix: str = _FIX) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.segments: list[str] = []


# -- class references --------------------------------------------------------------------------

# tag -> (what it must be, check); decode accepts a named object only if the check passes
_KINDS: dict[str, tuple[str, Callable[[type], bool]]] = {
    "pydantic": ("a pydantic BaseModel", lambda c: issubclass(c, BaseModel)),
    "dataclass": ("a dataclass", dataclasses.is_dataclass),
    "enum": ("an Enum", lambda c: issubclass(c, enum.Enum)),
    "namedtuple": ("a NamedTuple", lambda c: issubclass(c, tuple) and hasattr(c, "_fields")),
}


def _lookup(ref: str) -> Any:
    """The object named ``module:Qualname`` among imported modules, or ``_MISSING``.

    Uses ``vars()`` rather than ``getattr`` so no ``__getattr__`` hook (lazy import) can run.
    """
    module_name, _, qualname = ref.partition(":")
    obj: Any = sys.modules.get(module_name, _MISSING)
    for part in qualname.split(".") if obj is not _MISSING else ():
        try:
            obj = vars(obj).get(part, _MISSING)
        except TypeError:  # no __dict__
            return _MISSING
        if obj is _MISSING:
            break
    return obj


def _class_ref(cls: type) -> str:
    """``module:Qualname`` of ``cls``, checked to resolve back to ``cls`` on the other side."""
    ref = f"{cls.__module__}:{cls.__qualname__}"
    if _lookup(ref) is not cls:
        raise _Failure(
            f"class {ref!r} cannot be found by its name, so another process could not rebuild it",
            "Define the class at module top level (not inside a function, not a parametrized "
            "generic) in a module both client and workers import.",
        )
    return ref


def _resolve(kind: str, ref: Any) -> Any:
    """The class named ``ref`` if it is imported and of ``kind``, else :class:`CodecError`."""
    what, check = _KINDS[kind]
    module_name = ref.partition(":")[0] if isinstance(ref, str) else ""
    obj = _lookup(ref) if isinstance(ref, str) else _MISSING
    if isinstance(obj, type) and check(obj):
        accepted = _accepted.get()
        if accepted is None or obj in accepted or obj in accepted_types.registered():
            return obj
        raise CodecError(
            f"cannot decode {what} {ref!r}: the tool's signature does not name it, and a message "
            "may only make a process build the classes it expects. Annotate the tool's parameter "
            "or return type with it, or call aethergraph.accepted_types.accept("
            f"{ref.partition(':')[2]}) where it is defined."
        )
    if module_name and module_name not in sys.modules:
        why = f"module {module_name!r} is not imported in this process"
    elif obj is _MISSING:
        why = f"module {module_name!r} defines no {ref.partition(':')[2]!r}"
    else:
        why = f"{ref!r} is not {what} class"
    hint = ""
    if module_name == "__main__":
        hint = " (a class defined in a script's __main__ exists only in that process)"
    raise CodecError(
        f"cannot decode {what} {ref!r}: {why}{hint}. The worker/client must import the module "
        "that defines it before decoding: aethergraph never imports a module named in a message, "
        "because a message must never make a process import or run code."
    )


# -- encode ------------------------------------------------------------------------------------


def _tag(tag: str, v: Any) -> dict[str, Any]:
    return {TAG: tag, "v": v}


def _enc_seq(items: Any, tag: str) -> list[Any]:
    """Encode the elements of a list/tuple/set; ``tag`` only shapes the error path."""
    out: list[Any] = []
    append = out.append
    try:
        for item in items:
            append(item if type(item) in _SCALARS else _enc(item))
    except _Failure as exc:
        i = len(out)  # the index of the element that failed
        exc.segments.append(f"[{i}]" if tag in ("list", "tuple") else f"[<{tag} element>]")
        raise
    return out


def _enc_dict(value: Mapping[Any, Any]) -> dict[str, Any]:
    """Plain JSON object when possible; escaped if it has our marker key; else a pair list."""
    if all(type(k) is str for k in value):
        out = _enc_str_dict(value)
        return out if TAG not in value else _tag("dict", out)
    pairs: list[list[Any]] = []
    for k, item in value.items():
        try:
            key = _enc(k)
        except _Failure as exc:
            exc.segments.append(f"[<key {type(k).__name__}>]")
            raise
        try:
            pairs.append([key, _enc(item)])
        except _Failure as exc:
            exc.segments.append(f"[{k!r}]")
            raise
    return _tag("map", pairs)


def _enc_str_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for k, item in value.items():
            out[k] = item if type(item) in _SCALARS else _enc(item)
    except _Failure as exc:
        exc.segments.append(f"[{k!r}]")
        raise
    return out


def _enc_path(p: PurePath) -> dict[str, Any]:
    if isinstance(p, Path):
        kind = "path"  # concrete: rebuilt as Path of the receiving OS
    else:
        kind = "purewindows" if isinstance(p, PureWindowsPath) else "pureposix"
    return {TAG: "path", "kind": kind, "v": str(p)}


def _enc_float(f: float) -> Any:
    if math.isfinite(f):
        return f if type(f) is float else float(f)
    return _tag("float", "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf"))


def _b64(v: bytes | bytearray) -> str:
    return base64.b64encode(v).decode("ascii")


# Exact types first; _enc_object walks a subclass's MRO through this table too, calling the
# base class's methods (dt.datetime.isoformat(v)) so subclass overrides cannot change the format.
_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    float: _enc_float,
    str: str.__str__,
    int: int.__int__,
    list: lambda v: _enc_seq(v, "list"),
    dict: _enc_dict,
    tuple: lambda v: _tag("tuple", _enc_seq(v, "tuple")),
    set: lambda v: _tag("set", _enc_seq(v, "set")),
    frozenset: lambda v: _tag("frozenset", _enc_seq(v, "frozenset")),
    bytes: lambda v: _tag("bytes", _b64(v)),
    bytearray: lambda v: _tag("bytearray", _b64(v)),
    dt.datetime: lambda v: _tag("datetime", dt.datetime.isoformat(v)),
    dt.date: lambda v: _tag("date", dt.date.isoformat(v)),
    dt.time: lambda v: _tag("time", dt.time.isoformat(v)),
    dt.timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    Decimal: lambda v: _tag("decimal", Decimal.__str__(v)),
    uuid.UUID: lambda v: _tag("uuid", uuid.UUID.__str__(v)),
    complex: lambda v: _tag("complex", [_enc_float(v.real), _enc_float(v.imag)]),
    PurePosixPath: _enc_path,
    PureWindowsPath: _enc_path,
    PosixPath: _enc_path,
    WindowsPath: _enc_path,
}


def _enc_object(v: Any) -> Any:
    """Everything that is not an exact builtin type: classes by reference, then subclasses."""
    cls = type(v)
    if cls is Offloaded:
        return v.marker()
    if isinstance(v, enum.Enum):
        ref = _class_ref(cls)
        if v.name is not None and cls.__members__.get(v.name) is v:
            return {TAG: "enum", "cls": ref, "v": v.name}
        return {TAG: "enum", "cls": ref, "value": _enc(v.value)}  # e.g. a combination of Flags
    if isinstance(v, BaseModel):
        ref = _class_ref(cls)
        try:
            data = v.model_dump(mode="json")
        except Exception as exc:  # pydantic's serialization errors have no common base
            raise _Failure(f"pydantic model {ref!r} could not be dumped: {exc}") from exc
        return {TAG: "pydantic", "cls": ref, "data": data}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        ref = _class_ref(cls)
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(v):
            value = getattr(v, field.name, _MISSING)
            if value is _MISSING:
                continue  # an init=False field that was never set
            try:
                fields[field.name] = _enc(value)
            except _Failure as exc:
                exc.segments.append(f".{field.name}")
                raise
        return {TAG: "dataclass", "cls": ref, "v": fields}
    if isinstance(v, tuple) and hasattr(cls, "_fields"):
        ref = _class_ref(cls)
        return {TAG: "namedtuple", "cls": ref, "v": _enc_seq(v, "tuple")}
    for base in cls.__mro__[1:]:  # subclasses of supported builtins travel as the base type
        handler = _BY_TYPE.get(base)
        if handler is not None:
            return handler(v)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    raise _Failure(f"values of type {name} are not supported")


def _enc(v: Any) -> Any:
    t = type(v)
    if t in _SCALARS:
        return v
    handler = _BY_TYPE.get(t)
    return handler(v) if handler is not None else _enc_object(v)


def encode(value: Any, *, where: str = "value") -> Any:
    """``value`` as a JSON-compatible structure that :func:`decode` turns back into it.

    ``where`` names the value in error messages, e.g. ``"node 'f_0' argument 'rows'"``.
    """
    if type(value) in _SCALARS:
        return value
    try:
        return _enc(value)
    except _Failure as exc:
        path = where + "".join(reversed(exc.segments))
        raise CodecError(f"cannot encode {path}: {exc.reason}. {exc.fix}", path=path) from None
    except RecursionError:
        raise CodecError(
            f"cannot encode {where}: it is nested too deeply or contains a reference cycle; "
            "send a flatter structure, or save it with context.artifacts() and pass its URI.",
            path=where,
        ) from None


# -- decode ------------------------------------------------------------------------------------

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_PATHS: dict[str, type[PurePath]] = {
    "path": Path,
    "pureposix": PurePosixPath,
    "purewindows": PureWindowsPath,
}


def _dec_dataclass(d: dict[str, Any]) -> Any:
    cls = _resolve("dataclass", d["cls"])
    fields = {f.name: f for f in dataclasses.fields(cls)}  # an unknown name: KeyError below
    values = {name: _dec(v) for name, v in d["v"].items()}
    obj = cls(**{k: v for k, v in values.items() if fields[k].init})
    for k, v in values.items():
        if not fields[k].init:
            object.__setattr__(obj, k, v)  # also works for frozen dataclasses
    return obj


def _dec_enum(d: dict[str, Any]) -> Any:
    cls = _resolve("enum", d["cls"])
    return cls[d["v"]] if "v" in d else cls(_dec(d["value"]))


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda d: {k: _dec(v) for k, v in d["v"].items()},
    "map": lambda d: {_dec(k): _dec(v) for k, v in d["v"]},
    "float": lambda d: _FLOATS[d["v"]],
    "tuple": lambda d: tuple(_dec(x) for x in d["v"]),
    "set": lambda d: {_dec(x) for x in d["v"]},
    "frozenset": lambda d: frozenset(_dec(x) for x in d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["v"], validate=True)),
    "datetime": lambda d: dt.datetime.fromisoformat(d["v"]),
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d: dt.timedelta(*d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "uuid": lambda d: uuid.UUID(d["v"]),
    "complex": lambda d: complex(_dec(d["v"][0]), _dec(d["v"][1])),
    "path": lambda d: _PATHS[d["kind"]](d["v"]),
    "enum": _dec_enum,
    "pydantic": lambda d: _resolve("pydantic", d["cls"]).model_validate(d["data"]),
    "dataclass": _dec_dataclass,
    "namedtuple": lambda d: _resolve("namedtuple", d["cls"])(*(_dec(x) for x in d["v"])),
}


def _dec_tagged(d: dict[str, Any]) -> Any:
    tag = d[TAG]
    if tag == "ref":
        if not is_ref(d):
            raise CodecError(f"cannot decode malformed 'ref' value {d!r}")
        return Offloaded(d["uri"], d.get("size"), _accepted.get())
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise CodecError(
            f"cannot decode unknown tag {tag!r}; was it sent by a newer aethergraph version?"
        )
    try:
        return decoder(d)
    except CodecError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise CodecError(
            f"cannot decode malformed {tag!r} value: {type(exc).__name__}: {exc}"
        ) from exc


def _dec(d: Any) -> Any:
    t = type(d)
    if t in _JSON_SCALARS:
        return d
    if t is list:
        return [x if type(x) in _JSON_SCALARS else _dec(x) for x in d]
    if t is dict:
        if TAG in d:
            return _dec_tagged(d)
        return {k: v if type(v) in _JSON_SCALARS else _dec(v) for k, v in d.items()}
    raise CodecError(
        f"cannot decode a {t.__name__}: decode() takes JSON data (as made by encode()/json.loads)"
    )


def decode(data: Any, *, accepted: frozenset[type] | None = None) -> Any:
    """The value that :func:`encode` turned into ``data``; imports nothing (see module doc).

    ``accepted``: the only classes (models, dataclasses, enums, NamedTuples) ``data`` may name —
    a message's decode passes its tool's (``accepted_types.signature_types``); ``None`` accepts
    any imported class of the right kind (the process's own stores)."""
    token = _accepted.set(accepted)
    try:
        return _dec(data)
    except RecursionError:
        raise CodecError("cannot decode: the data is nested too deeply") from None
    finally:
        _accepted.reset(token)


def serialize(data: Any) -> str:
    """Already-encoded ``data`` as compact, strict JSON text (what travels and what is stored)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CodecError(
            f"cannot serialize {type(data).__name__} as JSON ({exc}); pass it through encode() "
            "first"
        ) from exc


def dumps(value: Any, *, where: str = "value") -> str:
    """``value`` encoded and serialized as compact, strict JSON text."""
    return serialize(encode(value, where=where))


def loads(text: str | bytes) -> Any:
    """The value that :func:`dumps` produced ``text`` from."""
    return decode(json.loads(text))


# -- large values by reference -----------------------------------------------------------------


class Offloaded:
    """A value that lives in the artifact store: what a decoded ``ref`` becomes.

    It travels on as a ref when passed to another tool (so a large value moves from worker to
    worker without passing through the client) and is loaded only where the value is really
    needed, by :func:`materialize`.
    """

    __slots__ = ("accepted", "size", "uri")

    def __init__(
        self, uri: str, size: int | None = None, accepted: frozenset[type] | None = None
    ) -> None:
        self.uri = uri
        self.size = size
        #: the classes its value may name once loaded (those of the message it came in)
        self.accepted = accepted

    def marker(self) -> dict[str, Any]:
        return {TAG: "ref", "uri": self.uri, "size": self.size}

    def __repr__(self) -> str:
        return f"<offloaded {self.uri} ({self.size} bytes)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Offloaded) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)


def is_ref(data: Any) -> bool:
    """Whether ``data`` is an offloaded-value reference made by :func:`offload`."""
    return type(data) is dict and data.get(TAG) == "ref" and isinstance(data.get("uri"), str)


__all__ = [
    "TAG",
    "CodecError",
    "Offloaded",
    "decode",
    "dumps",
    "encode",
    "is_ref",
    "loads",
    "serialize",
]
