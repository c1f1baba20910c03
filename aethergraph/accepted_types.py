"""Which classes a message may make a process build: those of a tool's signature, and no others.

Decoding a pydantic model or a dataclass runs code (validators, ``__post_init__``), so a message
that could name *any* imported class could make a worker or a client run code it never chose.
A message about a tool may therefore name only:

* the classes in that tool's signature — its parameters' and its return annotations, looked
  through ``list[...]``, ``dict[str, ...]``, ``X | None``, ``Annotated[...]`` and the like, and
  through the fields of the models, dataclasses and NamedTuples found there, recursively;
* classes registered with :func:`accept` — for a tool annotated ``Any`` that passes models
  through, or one that returns a model without saying so.

The worker decodes a node's arguments, and the client its outputs, with the tool's accepted set
(``codec.decode(data, accepted=...)``); anything else is a :class:`~aethergraph.errors.CodecError`
naming the class and this fix.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import threading
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from aethergraph.errors import ConfigurationError

_registered: set[type] = set()
_lock = threading.Lock()


def accept(*classes: type) -> None:
    """Let messages of every tool name these classes (models, dataclasses, enums, NamedTuples).

    For tools whose signature does not show them: ``def passthrough(value: Any)``, or a tool
    declared ``-> dict[str, Any]`` that returns a model. Call it where the classes are defined,
    in a module both the client and the workers import.
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise ConfigurationError(f"accept() takes classes, got {cls!r}")
    with _lock:
        _registered.update(classes)


def registered() -> frozenset[type]:
    """The classes registered with :func:`accept`."""
    with _lock:
        return frozenset(_registered)


def _is_codec_class(cls: type) -> bool:
    return (
        issubclass(cls, (BaseModel, enum.Enum))
        or dataclasses.is_dataclass(cls)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )


def _field_types(cls: type) -> Iterable[Any]:
    if issubclass(cls, BaseModel):
        return [f.annotation for f in cls.model_fields.values()]
    try:
        return list(typing.get_type_hints(cls).values())
    except Exception:  # an annotation that cannot be resolved: its own fields stay unknown
        return []


def types_in(annotations: Iterable[Any]) -> frozenset[type]:
    """The codec classes reachable from ``annotations`` (see the module docstring)."""
    found: set[type] = set()
    todo = list(annotations)
    seen: set[int] = set()
    while todo:
        hint = todo.pop()
        if id(hint) in seen:
            continue
        seen.add(id(hint))
        todo.extend(typing.get_args(hint))
        origin = typing.get_origin(hint)
        if origin is not None:
            continue
        if isinstance(hint, type) and _is_codec_class(hint) and hint not in found:
            found.add(hint)
            todo.extend(_field_types(hint))
    return frozenset(found)


@functools.lru_cache(maxsize=4096)
def signature_types(fn: Callable[..., Any]) -> frozenset[type]:
    """The codec classes in ``fn``'s parameter and return annotations, and in their fields."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations (a name only a type checker sees)
        hints = dict(getattr(fn, "__annotations__", {}))
    return types_in(hint for hint in hints.values() if not isinstance(hint, str))
