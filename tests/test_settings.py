"""Settings: validation at load (namespace, URLs), one URL redaction everywhere, overrides.

Nothing here connects to Redis: URLs are only parsed, validated and shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kombu.utils.url import maybe_sanitize_url

from aethergraph.errors import ConfigurationError
from aethergraph.keys import Keys, check_namespace
from aethergraph.services.builtins import redis_backends
from aethergraph.settings import Settings, get_settings, redact_url, reload_settings

SECRET = "hunter2-s3cret"


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch for AETHERGRAPH_* variables; the cached settings are dropped afterwards."""
    for name in list(os.environ):
        if name.startswith("AETHERGRAPH_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()  # the next get_settings() reads the restored environment


# -- namespace ----------------------------------------------------------------------------------


def test_invalid_namespace_is_rejected_at_load(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("AETHERGRAPH_NAMESPACE", "a:b c")
    with pytest.raises(ConfigurationError) as info:
        reload_settings()
    message = str(info.value)
    assert "AETHERGRAPH_NAMESPACE" in message
    assert "'a:b c'" in message
    # says what is allowed, not only what is wrong
    assert "letter, digit, '_' or '-'" in message


@pytest.mark.parametrize(
    "bad", ["a:b c", "", "a b", "a:b", "a.b", "ag*", "a?", "[ag]", "ag\n", "x" * 65, "ä"]
)
def test_namespace_rule(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid key namespace"):
        Settings(namespace=bad)
    with pytest.raises(ConfigurationError, match="invalid key namespace"):
        Keys(bad)
    with pytest.raises(ValueError, match="invalid key namespace"):  # the builtin base stays
        check_namespace(bad)


@pytest.mark.parametrize("good", ["ag", "prod-eu", "agtest0123abcd", "A_b-9", "x" * 64])
def test_valid_namespaces_are_accepted(good: str) -> None:
    assert Settings(namespace=good).namespace == good
    assert Keys(good).ns == good


# -- URL redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@localhost:6379/0",
        f"redis://user:{SECRET}@localhost:6379/0",
        f"rediss://user:{SECRET}@redis.example:6380/0?ssl_cert_reqs=required",
        f"unix:///run/redis.sock?password={SECRET}&db=1",
        f"http://user:{SECRET}@localhost:6379/0",  # wrong scheme: what an error must show
        f"redis://:{SECRET}@localhost:notaport/0",  # kombu cannot parse this one
        f"redis:/:{SECRET}@localhost/0",  # typo: no '://'
        f"redis//user:{SECRET}@localhost",
        f":{SECRET}@localhost",
        f"redis://:{SECRET}@with@at:1/0",
    ],
)
def test_redact_url_never_shows_the_password(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown
    assert shown.split("@")[-1] in url  # where it points is still shown


def test_redact_url_is_kombus_sanitizer_for_parsable_urls() -> None:
    url = f"redis://user:{SECRET}@localhost:6379/0"
    assert (
        redact_url(url)
        == maybe_sanitize_url(url, mask="***")
        == "redis://user:***@localhost:6379/0"
    )
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert redact_url("localhost") == "localhost"


def test_one_redaction_function_everywhere() -> None:
    assert redis_backends.redact_url is redact_url


def test_invalid_broker_url_error_does_not_print_the_password(
    clean_settings: pytest.MonkeyPatch,
) -> None:
    clean_settings.setenv("AETHERGRAPH_BROKER_URL", f"http://admin:{SECRET}@broker:6379/0")
    with pytest.raises(ConfigurationError) as info:
        reload_settings()
    err = info.value
    text = str(err)
    assert "AETHERGRAPH_BROKER_URL" in text
    assert "must be a Redis URL" in text
    assert "http://admin:***@broker:6379/0" in text
    # not in the message, and not in a chained exception a traceback would print
    assert err.__cause__ is None
    assert err.__context__ is None


def test_other_invalid_values_show_their_input(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("AETHERGRAPH_VISIBILITY_TIMEOUT", "-5")
    clean_settings.setenv("AETHERGRAPH_EXECUTOR", "dask")
    with pytest.raises(ConfigurationError) as info:
        reload_settings()
    text = str(info.value)
    assert (
        "AETHERGRAPH_VISIBILITY_TIMEOUT: Input should be greater than or equal to 12 (got '-5')"
        in text
    )
    assert "AETHERGRAPH_EXECUTOR" in text
    assert "'dask'" in text


def test_settings_repr_hides_passwords() -> None:
    settings = Settings(
        broker_url=f"redis://:{SECRET}@h:6379/0", result_backend=f"redis://u:{SECRET}@h:1/1"
    )
    assert settings.broker_url == f"redis://:{SECRET}@h:6379/0"  # the value itself is intact
    for text in (repr(settings), str(settings)):
        assert SECRET not in text
        assert "redis://:***@h:6379/0" in text


# -- validated overrides ------------------------------------------------------------------------


def test_updated_overrides_without_touching_the_environment(
    clean_settings: pytest.MonkeyPatch,
) -> None:
    clean_settings.setenv("AETHERGRAPH_MAX_PACK", "7")
    base = reload_settings()
    before = dict(os.environ)
    changed = base.updated(broker_url="redis://127.0.0.1:1/0", namespace="other")
    assert (changed.broker_url, changed.namespace, changed.max_pack) == (
        "redis://127.0.0.1:1/0",
        "other",
        7,
    )
    assert (base.broker_url, base.namespace) == (None, "ag")  # the original is unchanged
    assert dict(os.environ) == before
    assert get_settings().broker_url is None


def test_updated_validates_like_the_environment() -> None:
    base = Settings()
    with pytest.raises(ConfigurationError) as info:
        base.updated(broker_url=f"http://u:{SECRET}@h:1/0")
    assert "broker_url: must be a Redis URL" in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigurationError, match="invalid key namespace"):
        base.updated(namespace="a:b")
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) \['brokr'\]"):
        base.updated(brokr="redis://h")
