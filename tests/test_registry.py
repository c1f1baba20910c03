"""Tests of the process registry of named, versioned objects."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aethergraph import ConfigurationError, Registry, current_registry, graph_fn, tool
from aethergraph.errors import AetherGraphError, RegistryLookupError
from aethergraph.registry import RegistryEntry, version_key


@pytest.fixture
def reg() -> Registry:
    return Registry()


def test_register_and_get(reg: Registry) -> None:
    obj = object()
    entry = reg.register(nspace="graphfn", name="g", version="1.0.0", obj=obj)
    assert entry == RegistryEntry("graphfn", "g", "1.0.0", obj)
    assert (entry.nspace, entry.name, entry.version, entry.obj) == ("graphfn", "g", "1.0.0", obj)
    assert reg.get(nspace="graphfn", name="g") is obj
    assert reg.get(nspace="graphfn", name="g", version="1.0.0") is obj


def test_namespaces_are_separate(reg: Registry) -> None:
    a, b = object(), object()
    reg.register(nspace="graphfn", name="same", version="1", obj=a)
    reg.register(nspace="agent", name="same", version="1", obj=b)
    assert reg.get(nspace="graphfn", name="same") is a
    assert reg.get(nspace="agent", name="same") is b
    with pytest.raises(RegistryLookupError):
        reg.get(nspace="tool", name="same")


def test_get_specific_version(reg: Registry) -> None:
    v1, v2 = object(), object()
    reg.register(nspace="tool", name="t", version="1.0.0", obj=v1)
    reg.register(nspace="tool", name="t", version="2.0.0", obj=v2)
    assert reg.get(nspace="tool", name="t", version="1.0.0") is v1
    assert reg.get(nspace="tool", name="t", version="2.0.0") is v2
    assert reg.get(nspace="tool", name="t") is v2


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["0.9.1", "0.10.0", "0.2.0"], "0.10.0"),
        (["1.0.0rc1", "1.0.0"], "1.0.0"),
        (["1.0.0", "1.0.0rc1"], "1.0.0"),
        (["1.0.0a1", "1.0.0b2", "1.0.0rc1"], "1.0.0rc1"),
        (["9.0.0", "10.0.0"], "10.0.0"),
        (["1.2.3"], "1.2.3"),
        (["2.0.0rc1", "1.9.9"], "2.0.0rc1"),
    ],
)
def test_latest_version_ordering(reg: Registry, versions: list[str], latest: str) -> None:
    for ver in versions:
        reg.register(nspace="tool", name="t", version=ver, obj=ver)
    assert reg.get(nspace="tool", name="t") == latest


def test_version_key_orders_semantically() -> None:
    ordered = ["0.1.0", "0.9.1", "0.10.0", "1.0.0a1", "1.0.0b1", "1.0.0rc1", "1.0.0", "1.0.1"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("0.10.0") > version_key("0.9.1")
    assert version_key("1.0.0") > version_key("1.0.0rc1")
    assert version_key("1.0.0rc2") > version_key("1.0.0rc1")


def test_list_is_sorted_by_namespace_name_and_version(reg: Registry) -> None:
    reg.register(nspace="tool", name="b", version="0.10.0", obj=1)
    reg.register(nspace="tool", name="b", version="0.9.1", obj=2)
    reg.register(nspace="tool", name="a", version="1.0.0", obj=3)
    reg.register(nspace="agent", name="z", version="1", obj=4)
    assert [(e.nspace, e.name, e.version) for e in reg.list()] == [
        ("agent", "z", "1"),
        ("tool", "a", "1.0.0"),
        ("tool", "b", "0.9.1"),
        ("tool", "b", "0.10.0"),
    ]
    assert [(e.name, e.version, e.obj) for e in reg.list("tool")] == [
        ("a", "1.0.0", 3),
        ("b", "0.9.1", 2),
        ("b", "0.10.0", 1),
    ]
    assert all(isinstance(e, RegistryEntry) for e in reg.list())
    assert reg.list("nothing-here") == []
    assert Registry().list() == []


def test_reregistration_replaces(reg: Registry) -> None:
    old, new = object(), object()
    reg.register(nspace="graphfn", name="g", version="0.1.0", obj=old)
    reg.register(nspace="graphfn", name="g", version="0.1.0", obj=new)
    assert reg.get(nspace="graphfn", name="g", version="0.1.0") is new
    assert len(reg.list("graphfn")) == 1


def test_unregister_one_version(reg: Registry) -> None:
    reg.register(nspace="tool", name="t", version="1.0.0", obj="one")
    reg.register(nspace="tool", name="t", version="2.0.0", obj="two")
    reg.unregister(nspace="tool", name="t", version="2.0.0")
    assert reg.get(nspace="tool", name="t") == "one"
    with pytest.raises(RegistryLookupError):
        reg.get(nspace="tool", name="t", version="2.0.0")
    reg.unregister(nspace="tool", name="t", version="1.0.0")
    with pytest.raises(RegistryLookupError):
        reg.get(nspace="tool", name="t")
    assert reg.list("tool") == []


def test_unregister_all_versions(reg: Registry) -> None:
    reg.register(nspace="tool", name="t", version="1.0.0", obj=1)
    reg.register(nspace="tool", name="t", version="2.0.0", obj=2)
    reg.register(nspace="tool", name="keep", version="1.0.0", obj=3)
    reg.unregister(nspace="tool", name="t")
    with pytest.raises(RegistryLookupError):
        reg.get(nspace="tool", name="t")
    assert [e.name for e in reg.list("tool")] == ["keep"]


def test_unregister_unknown_is_a_no_op(reg: Registry) -> None:
    reg.register(nspace="tool", name="t", version="1", obj=1)
    reg.unregister(nspace="tool", name="ghost")
    reg.unregister(nspace="tool", name="ghost", version="1")
    reg.unregister(nspace="tool", name="t", version="9")
    reg.unregister(nspace="nope", name="t")
    assert reg.get(nspace="tool", name="t") == 1


def test_lookup_error_for_unknown_name(reg: Registry) -> None:
    reg.register(nspace="graphfn", name="alpha", version="1", obj=1)
    reg.register(nspace="graphfn", name="beta", version="1", obj=2)
    with pytest.raises(RegistryLookupError) as info:
        reg.get(nspace="graphfn", name="gamma")
    err = info.value
    assert isinstance(err, LookupError)
    assert isinstance(err, AetherGraphError)
    message = str(err)
    assert "graphfn/gamma" in message
    # the message lists what is registered, to spot typos
    assert "alpha" in message
    assert "beta" in message


def test_lookup_error_for_unknown_namespace(reg: Registry) -> None:
    with pytest.raises(LookupError, match="nothing registered as agent/x") as info:
        reg.get(nspace="agent", name="x")
    assert "none" in str(info.value)


def test_lookup_error_for_unknown_version(reg: Registry) -> None:
    reg.register(nspace="tool", name="t", version="0.10.0", obj=1)
    reg.register(nspace="tool", name="t", version="0.9.1", obj=2)
    with pytest.raises(RegistryLookupError) as info:
        reg.get(nspace="tool", name="t", version="3.0.0")
    message = str(info.value)
    assert "tool/t" in message
    assert "'3.0.0'" in message
    # available versions are listed, oldest first
    assert "['0.9.1', '0.10.0']" in message


@pytest.mark.parametrize(
    "key",
    [
        {"nspace": "", "name": "n", "version": "1"},
        {"nspace": "tool", "name": "", "version": "1"},
        {"nspace": "tool", "name": "n", "version": ""},
        {"nspace": "tool", "name": None, "version": "1"},
        {"nspace": "tool", "name": 3, "version": "1"},
        {"nspace": "tool", "name": "n", "version": 1},
        {"nspace": None, "name": "n", "version": "1"},
    ],
)
def test_invalid_keys_are_rejected(reg: Registry, key: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        reg.register(obj=object(), **key)
    assert reg.list() == []


def test_concurrent_registration_is_safe(reg: Registry) -> None:
    def worker(i: int) -> None:
        for j in range(50):
            reg.register(nspace="tool", name=f"t{i}", version=f"0.{j}.0", obj=(i, j))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(reg.list("tool")) == 8 * 50
    for i in range(8):
        assert reg.get(nspace="tool", name=f"t{i}") == (i, 49)


# -- the process registry ---------------------------------------------------------------------


def test_current_registry_is_a_singleton() -> None:
    first = current_registry()
    assert isinstance(first, Registry)
    assert current_registry() is first
    results: list[Registry] = []
    th = threading.Thread(target=lambda: results.append(current_registry()))
    th.start()
    th.join(timeout=30)
    assert results == [first]


def test_decorators_register_into_current_registry() -> None:
    @tool(name="reg_tool_probe", version="1.4.0")
    def probe() -> None:
        return None

    @graph_fn(name="reg_graph_probe", version="0.0.7", agent="reg_agent_probe")
    async def body() -> Any:
        return {}

    reg = current_registry()
    try:
        assert reg.get(nspace="tool", name="reg_tool_probe", version="1.4.0") is probe
        assert reg.get(nspace="graphfn", name="reg_graph_probe") is body
        assert reg.get(nspace="agent", name="reg_agent_probe", version="0.0.7") is body
        assert body.registry_key is not None
    finally:
        reg.unregister(nspace="tool", name="reg_tool_probe")
        reg.unregister(nspace="graphfn", name="reg_graph_probe")
        reg.unregister(nspace="agent", name="reg_agent_probe")
    with pytest.raises(RegistryLookupError):
        reg.get(nspace="tool", name="reg_tool_probe")


def test_redefined_graph_replaces_registration() -> None:
    @graph_fn(name="reg_redefined_graph")
    async def first() -> Any:
        return {"v": 1}

    @graph_fn(name="reg_redefined_graph")
    async def second() -> Any:
        return {"v": 2}

    assert first is not second
    assert current_registry().get(nspace="graphfn", name="reg_redefined_graph") is second


# -- PEP 440 ordering (packaging.version) -----------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["1.0", "1.0.post1"], "1.0.post1"),  # a post-release is newer than its release
        (["1.0.post1", "1.0"], "1.0.post1"),
        (["1.0.dev1", "1.0a1"], "1.0a1"),  # dev-releases come before the pre-releases
        (["1.0", "1.0+local"], "1.0+local"),
        (["1!0.1", "2.0"], "1!0.1"),  # an epoch wins over any release number
    ],
)
def test_latest_version_follows_pep_440(reg: Registry, versions: list[str], latest: str) -> None:
    for ver in versions:
        reg.register(nspace="tool", name="t", version=ver, obj=ver)
    assert reg.get(nspace="tool", name="t") == latest


def test_post_release_sorts_after_release() -> None:
    assert version_key("1.0.post1") > version_key("1.0")
    ordered = ["1.0.dev0", "1.0a1", "1.0rc1", "1.0", "1.0.post1", "1.1"]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_equal_versions_spelled_differently_are_one_entry(reg: Registry) -> None:
    assert version_key("1.0") == version_key("1.0.0")
    reg.register(nspace="tool", name="t", version="1.0", obj="short")
    assert reg.get(nspace="tool", name="t", version="1.0.0") == "short"
    reg.register(nspace="tool", name="t", version="1.0.0", obj="long")  # replaces: same version
    assert reg.get(nspace="tool", name="t", version="1.0") == "long"
    assert [(e.version, e.obj) for e in reg.list("tool")] == [("1.0.0", "long")]
    reg.unregister(nspace="tool", name="t", version="1")
    assert reg.list("tool") == []


@pytest.mark.parametrize("bad", ["latest", "1.0-beta-final", "v1..2", "1.0 rc"])
def test_non_pep_440_version_is_refused_at_registration(reg: Registry, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="not a PEP 440 version") as info:
        reg.register(nspace="tool", name="t", version=bad, obj=1)
    assert repr(bad) in str(info.value)
    assert "1.2.0" in str(info.value)  # the message shows what a valid version looks like
    assert reg.list() == []


def test_tool_with_non_pep_440_version_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="PEP 440"):

        @tool(name="reg_bad_version_probe", version="newest")
        def probe() -> None:
            return None

    with pytest.raises(RegistryLookupError):
        current_registry().get(nspace="tool", name="reg_bad_version_probe")


def test_lookup_and_unregister_with_non_pep_440_version(reg: Registry) -> None:
    reg.register(nspace="tool", name="t", version="1.0", obj=1)
    with pytest.raises(RegistryLookupError, match="not a PEP 440 version"):
        reg.get(nspace="tool", name="t", version="latest")
    reg.unregister(nspace="tool", name="t", version="latest")  # nothing can be under it
    assert reg.get(nspace="tool", name="t") == 1
