"""The process registry of named, versioned objects (graph functions, agents, tools).

``@graph_fn`` registers every graph under the ``graphfn`` namespace (and ``agent`` when asked);
``@tool`` registers under ``tool``. Re-registering the same ``(nspace, name, version)`` replaces
the entry, so re-running a notebook cell that redefines a graph just works.
"""

from __future__ import annotations

import re
import threading
from typing import Any, NamedTuple

from aethergraph.errors import ConfigurationError, RegistryLookupError


class RegistryEntry(NamedTuple):
    """One registered object."""

    nspace: str
    name: str
    version: str
    obj: Any


_VERSION_PART = re.compile(r"(\d+)|([A-Za-z]+)")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``"0.10.0"`` after ``"0.9.1"`` and ``"1.0.0rc1"`` before ``"1.0.0"``."""
    parts: list[tuple[int, int | str]] = []
    for number, word in _VERSION_PART.findall(version):
        # numbers sort above words at the same position, so pre-releases sort first
        parts.append((1, int(number)) if number else (0, word))
    parts.append((1, -1))  # a release ("1.0") sorts after its pre-releases ("1.0rc1")
    return tuple(parts)


class Registry:
    """A thread-safe ``nspace -> name -> version -> obj`` map."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def register(self, *, nspace: str, name: str, version: str, obj: Any) -> RegistryEntry:
        """Register ``obj``; an existing entry with the same key is replaced."""
        for label, value in (("nspace", nspace), ("name", name), ("version", version)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"registry {label} must be a non-empty string, got {value!r}"
                )
        with self._lock:
            self._entries.setdefault(nspace, {}).setdefault(name, {})[version] = obj
        return RegistryEntry(nspace, name, version, obj)

    def get(self, *, nspace: str, name: str, version: str | None = None) -> Any:
        """The object registered under ``nspace/name`` at ``version`` (``None``: the latest)."""
        with self._lock:
            versions = self._entries.get(nspace, {}).get(name)
            if not versions:
                known = sorted(self._entries.get(nspace, {}))
                raise RegistryLookupError(
                    f"nothing registered as {nspace}/{name}; registered names in {nspace!r}: "
                    f"{known or 'none'}"
                )
            if version is None:
                version = max(versions, key=version_key)
            if version not in versions:
                raise RegistryLookupError(
                    f"{nspace}/{name} has no version {version!r}; available: "
                    f"{sorted(versions, key=version_key)}"
                )
            return versions[version]

    def list(self, nspace: str | None = None) -> list[RegistryEntry]:
        """Every entry (of one namespace when given), sorted by namespace, name and version."""
        with self._lock:
            spaces = [nspace] if nspace is not None else sorted(self._entries)
            out: list[RegistryEntry] = []
            for space in spaces:
                for name in sorted(self._entries.get(space, {})):
                    versions = self._entries[space][name]
                    for ver in sorted(versions, key=version_key):
                        out.append(RegistryEntry(space, name, ver, versions[ver]))
            return out

    def unregister(self, *, nspace: str, name: str, version: str | None = None) -> None:
        """Remove one version, or every version of ``name`` when ``version`` is ``None``."""
        with self._lock:
            names = self._entries.get(nspace, {})
            if version is None:
                names.pop(name, None)
            elif name in names:
                names[name].pop(version, None)
                if not names[name]:
                    del names[name]


_REGISTRY = Registry()


def current_registry() -> Registry:
    """The process-wide registry that decorators register into."""
    return _REGISTRY
