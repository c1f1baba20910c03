"""The error hierarchy: one module, one ``__all__``, builtin bases kept for existing excepts."""

from __future__ import annotations

import inspect
import pickle

import pytest

import aethergraph.codec
import aethergraph.errors as errors
from aethergraph.errors import (
    AetherGraphError,
    CodecError,
    ConfigurationError,
    ConfigurationTypeError,
)
from aethergraph.keys import Keys
from aethergraph.scheduling.events import EventBus


def test_all_lists_every_error_class_once_and_sorted() -> None:
    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, AetherGraphError)
    }
    assert classes <= set(errors.__all__)
    assert errors.__all__ == sorted(set(errors.__all__))


def test_codec_error_lives_in_errors_and_is_still_importable_from_codec() -> None:
    assert CodecError.__module__ == "aethergraph.errors"
    assert aethergraph.codec.CodecError is CodecError
    err = CodecError("cannot encode x", path="args['x']")
    # unsupported type: TypeError, as json.dumps; malformed data: ValueError, as json.loads
    assert isinstance(err, TypeError)
    assert isinstance(err, ValueError)
    assert err.path == "args['x']"
    assert str(pickle.loads(pickle.dumps(err))) == "cannot encode x"


def test_malformed_message_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown tag"):
        aethergraph.codec.decode({"__ag__": "pickle", "v": "..."})


def test_bad_namespace_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        Keys("a:b")
    assert isinstance(info.value, ValueError)


def test_non_callable_listener_is_a_configuration_type_error() -> None:
    with pytest.raises(ConfigurationTypeError, match="must be callable") as info:
        EventBus().subscribe("not a function")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)  # what it was before: existing excepts work
    assert isinstance(info.value, ConfigurationError)
