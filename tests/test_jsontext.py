"""The wire's JSON: orjson's speed, the standard library's range of values and errors."""

from __future__ import annotations

import json

import pytest

from aethergraph import jsontext


def test_compact_utf8_text_as_the_standard_library_writes_it() -> None:
    value = {"task_id": "ab.1", "outputs": {"y": [1, 2.5, None, True, "é"]}, "failure": None}
    assert jsontext.dumps(value) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert jsontext.loads(jsontext.dumps(value)) == value


def test_integers_beyond_64_bits_both_ways() -> None:
    big = {"n": 2**80, "m": -(2**70)}
    text = jsontext.dumps(big)  # orjson refuses these: the standard library writes them
    assert jsontext.loads(text) == big
    assert jsontext.loads(text.decode()) == big


def test_what_only_the_standard_library_reads_is_still_read() -> None:
    assert jsontext.loads('{"x": NaN}')["x"] != jsontext.loads('{"x": NaN}')["x"]  # NaN


def test_non_string_keys_are_written_as_json_writes_them() -> None:
    assert jsontext.loads(jsontext.dumps({1: "a"})) == {"1": "a"}


def test_text_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(json.JSONDecodeError):  # a ValueError, as from json.loads
        jsontext.loads(b"{not json")


def test_a_value_json_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})
