"""The JSON codec: typed round trips, safe decoding, error paths and offloading to artifacts."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import math
import sys
import uuid
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel

from aethergraph import codec
from aethergraph.codec import CodecError, decode, dumps, encode, loads
from aethergraph.errors import AetherGraphError

MOD = __name__  # how this module is named in sys.modules (class refs use it)


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Point(NamedTuple):
    x: int
    y: float


class Row(BaseModel):
    name: str
    when: dt.datetime
    tags: list[str] = []


class Nested(BaseModel):
    rows: list[Row]
    meta: dict[str, int]


@dataclasses.dataclass
class Item:
    name: str
    qty: int = 1
    seen: set[Any] = dataclasses.field(default_factory=set)
    extra: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass(frozen=True)
class Frozen:
    point: Point
    at: dt.date


class Outer:
    @dataclasses.dataclass
    class Inner:
        v: tuple[int, ...]


def roundtrip(value: Any) -> Any:
    """Through encode, real JSON text and decode, like a Redis message."""
    text = json.dumps(encode(value), ensure_ascii=False, allow_nan=False)
    return decode(json.loads(text))


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type, recursively (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, dict):
        if [type(k) for k in a] != [type(k) for k in b]:
            return False
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple) and not hasattr(a, "_fields"):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2, minutes=30))

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    1.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    "",
    'héllo ✓ \x00 "quoted"',
    [],
    [1, "a", None, [2.5, [True]]],
    {},
    {"a": 1, "b": [1, 2], "c": {"d": None}},
    {1: "one", 2: "two"},
    {(1, 2): "tuple key", None: 0, 3.5: "float", True: "bool"},
    {frozenset({1}): {"x": 1}},
    {Color.RED: 1, Level.HIGH: 2},
    (),
    (1,),
    (1, "a", (2, (3, [4]))),
    set(),
    {1, 2, "x", (3, 4)},
    frozenset({1, frozenset({2})}),
    b"",
    b"\x00\xff binary",
    bytearray(b"mutable"),
    dt.datetime(2024, 5, 17, 12, 30, 45, 123456),
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=PLUS2),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 59, 999),
    dt.time(8, 0, tzinfo=PLUS2),
    dt.timedelta(days=-3, seconds=5, microseconds=7),
    Decimal("1.10"),
    Decimal("-1E+30"),
    Decimal("Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Path("/tmp/some dir/file.txt"),
    PurePosixPath("a/b"),
    PureWindowsPath(r"C:\Users\x"),
    complex(1, -2),
    complex(math.inf, 0),
    Color.RED,
    Color.GREEN,
    Level.LOW,
    Perm.R | Perm.W,
    Perm(0),
    Point(1, 2.5),
    Item("bolt", 3, {"a"}),
    Frozen(Point(0, 0.0), dt.date(2020, 1, 1)),
    Outer.Inner((1, 2)),
    Row(name="r", when=dt.datetime(2024, 1, 1, tzinfo=UTC), tags=["x"]),
    Nested(rows=[Row(name="a", when=dt.datetime(2024, 1, 1))], meta={"n": 1}),
    {"__ag__": "tuple", "v": [1, 2]},
    {"__ag__": {"__ag__": "nested"}, "other": (1, 2)},
    [{"when": dt.date(2020, 1, 1), "ids": {uuid.UUID(int=1)}, "raw": b"\x01"}],
    {"deep": [[[[(1, {2: frozenset({b"x"})})]]]]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_preserves_value_and_type(value: Any) -> None:
    back = roundtrip(value)
    assert same(back, value), (value, back)
    assert type(back) is type(value)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_dumps_is_strict_json(value: Any) -> None:
    text = dumps(value)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert same(loads(text), value)
    assert same(loads(text.encode("utf-8")), value)


def test_json_native_values_are_sent_unchanged() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    assert encode(value) == value
    assert encode(value) is not value  # a copy: the caller's data is never aliased
    assert dumps("ü") == '"ü"'  # ensure_ascii=False
    assert dumps([1, {"a": 2}]) == '[1,{"a":2}]'  # compact


def test_nested_element_types_are_kept() -> None:
    value = {"t": [(1, 2), {3}], "d": {(1,): [b"x"]}}
    back = roundtrip(value)
    assert type(back["t"][0]) is tuple
    assert type(back["t"][1]) is set
    assert list(back["d"]) == [(1,)]
    assert type(back["d"][(1,)][0]) is bytes


def test_user_dict_with_marker_key_round_trips() -> None:
    for value in (
        {"__ag__": "ref", "uri": "artifact://sha256/" + "0" * 64, "size": 1},
        {"__ag__": "pydantic", "cls": "os:system", "data": {}},
        {"__ag__": None},
    ):
        assert roundtrip(value) == value
        assert not codec.is_ref(encode(value))


def test_builtin_subclasses_travel_as_their_base_type() -> None:
    back = roundtrip(OrderedDict(a=1))
    assert type(back) is dict
    assert back == {"a": 1}


def test_aware_datetime_keeps_its_offset() -> None:
    value = dt.datetime(2024, 3, 1, 9, 0, tzinfo=PLUS2)
    back = roundtrip(value)
    assert back.utcoffset() == dt.timedelta(hours=2, minutes=30)
    assert back == value


def test_pydantic_wire_form() -> None:
    row = Row(name="r", when=dt.datetime(2024, 1, 1))
    assert encode(row) == {
        "__ag__": "pydantic",
        "cls": f"{MOD}:Row",
        "data": row.model_dump(mode="json"),
    }


def test_dataclass_non_init_field_round_trips() -> None:
    item = Item("x")
    item.extra = 42
    back = roundtrip(item)
    assert back == item
    assert back.extra == 42


def test_deep_nesting_works() -> None:
    value: Any = "leaf"
    for _ in range(200):
        value = [value]
    assert roundtrip(value) == value


def test_reference_cycle_is_a_codec_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="reference cycle"):
        encode(loop)


# -- safe decoding -----------------------------------------------------------------------------

FAKE_MODULE = "aethergraph_tests_not_a_real_module"


@pytest.mark.parametrize("tag", ["pydantic", "dataclass", "enum", "namedtuple"])
def test_decode_never_imports_a_module(tag: str) -> None:
    payload = {"__ag__": tag, "cls": f"{FAKE_MODULE}:Thing", "v": "X", "data": {}}
    with pytest.raises(CodecError, match="must import the module") as info:
        decode(json.loads(json.dumps(payload)))
    assert FAKE_MODULE in str(info.value)
    assert FAKE_MODULE not in sys.modules


def test_decode_does_not_import_a_real_but_unimported_module() -> None:
    if "this" in sys.modules:
        pytest.skip("the stdlib module 'this' was imported by something else")
    with pytest.raises(CodecError, match="not imported"):
        decode({"__ag__": "enum", "cls": "this:Zen", "v": "X"})
    assert "this" not in sys.modules  # importing it would have printed the Zen of Python


@pytest.mark.parametrize(
    ("tag", "ref"),
    [
        ("pydantic", f"{MOD}:Item"),  # a dataclass is not a model
        ("dataclass", f"{MOD}:Row"),  # a model is not a dataclass
        ("enum", f"{MOD}:Point"),
        ("namedtuple", "builtins:tuple"),  # a tuple without _fields
        ("dataclass", "os:system"),  # a function
        ("pydantic", "os:environ"),  # an instance
        ("enum", f"{MOD}:NoSuchClass"),
        ("pydantic", "no-colon-at-all"),
    ],
)
def test_decode_refuses_the_wrong_kind_of_object(tag: str, ref: str) -> None:
    payload = {"__ag__": tag, "cls": ref, "v": {}, "data": {}}
    with pytest.raises(CodecError, match="cannot decode"):
        decode(payload)


def test_decode_rejects_unknown_tags_refs_and_malformed_values() -> None:
    with pytest.raises(CodecError, match="unknown tag"):
        decode({"__ag__": "pickle", "v": "..."})
    with pytest.raises(CodecError, match="malformed 'ref'"):
        decode({"__ag__": "ref", "uri": 3})
    with pytest.raises(CodecError, match="malformed"):
        decode({"__ag__": "bytes", "v": "not base64!"})
    with pytest.raises(CodecError, match="malformed"):
        decode({"__ag__": "enum", "cls": f"{MOD}:Color", "v": "PURPLE"})
    with pytest.raises(CodecError, match="malformed"):
        decode({"__ag__": "pydantic", "cls": f"{MOD}:Row", "data": {"name": 1}})
    with pytest.raises(CodecError, match="JSON data"):
        decode({1, 2})


# -- encode errors -----------------------------------------------------------------------------


def test_unencodable_value_deep_in_a_structure_names_type_and_path() -> None:
    value = {"rows": [{}, {}, {}, {"when": lambda: 0}]}
    with pytest.raises(CodecError) as info:
        encode(value, where="args")
    err = info.value
    assert err.path == "args['rows'][3]['when']"
    message = str(err)
    assert "args['rows'][3]['when']" in message
    assert "function" in message
    assert "pydantic model" in message
    assert "context.artifacts()" in message
    assert isinstance(err, TypeError)
    assert isinstance(err, AetherGraphError)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ([1, (2, object())], "value[1][1]"),
        ({5: [open]}, "value[5][0]"),
        (Item("y", 2, {asyncio.Lock()}), "value.seen[<set element>]"),
        ({"__ag__": 1, "s": [iter([])]}, "value['s'][0]"),
        ({(1, object()): 2}, "value[<key tuple>][1]"),
    ],
)
def test_error_paths(value: Any, path: str) -> None:
    with pytest.raises(CodecError) as info:
        encode(value)
    assert info.value.path == path


def test_where_prefixes_the_path_and_dumps_reports_it() -> None:
    import socket

    with socket.socket() as sock, pytest.raises(CodecError) as info:
        dumps({"conn": sock}, where="node 'f_0' argument 'rows'")
    assert info.value.path == "node 'f_0' argument 'rows'['conn']"
    assert "socket" in str(info.value)


def test_local_classes_are_refused_at_encode_time() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    class LocalModel(BaseModel):
        x: int

    for value in (Local(1), [LocalModel(x=1)]):
        with pytest.raises(CodecError, match="module top level"):
            encode(value)


def test_an_argument_that_cannot_be_encoded_is_not_told_to_return_something() -> None:
    with pytest.raises(CodecError) as info:
        encode({"rows": object()}, where="node 'f_0' argument")
    message = str(info.value)
    assert message.startswith("cannot encode node 'f_0' argument['rows']:")
    assert "Return" not in message
    assert "tool arguments and outputs" in message


# -- accepted classes: a message builds only what its tool's signature names -------------------
class Secret(BaseModel):
    """Imported, but in no tool's signature: a message must not be able to build it."""

    value: int


def _tool_with_models(rows: list[Nested] | None, item: Item, frozen: Frozen) -> dict[str, Row]:
    return {}


def test_signature_types_follow_annotations_and_fields() -> None:
    from aethergraph.accepted_types import signature_types

    found = signature_types(_tool_with_models)
    # Nested's fields bring Row; Frozen's bring Point; the return annotation names Row too
    assert found == {Nested, Row, Item, Frozen, Point}


def test_decode_builds_only_accepted_classes() -> None:
    from aethergraph.accepted_types import signature_types

    accepted = signature_types(_tool_with_models)
    row = Row(name="a", when=dt.datetime(2026, 1, 1))
    assert decode(encode({"r": row}), accepted=accepted) == {"r": row}
    forged = encode({"s": Secret(value=1)})
    assert decode(forged) == {"s": Secret(value=1)}  # the process's own data: no restriction
    with pytest.raises(CodecError, match="signature does not name it") as info:
        decode(forged, accepted=accepted)
    assert "accept(Secret)" in str(info.value)


def test_accept_registers_a_class_for_every_tool() -> None:
    from aethergraph import accepted_types

    class Late(BaseModel):
        v: int

    Late.__qualname__ = "Late"  # addressable at module level for this test
    globals()["Late"] = Late
    try:
        data = encode(Late(v=3))
        with pytest.raises(CodecError):
            decode(data, accepted=frozenset())
        accepted_types.accept(Late)
        assert decode(data, accepted=frozenset()) == Late(v=3)
    finally:
        accepted_types._registered.discard(Late)
        del globals()["Late"]
    with pytest.raises(AetherGraphError, match="takes classes"):
        accepted_types.accept("Late")  # type: ignore[arg-type]


def test_an_offloaded_value_keeps_the_accepted_classes_of_its_message() -> None:
    ref = {codec.TAG: "ref", "uri": "redis://x", "size": 3}
    marker = decode({"a": ref}, accepted=frozenset({Row}))["a"]
    assert marker.accepted == frozenset({Row})
