"""The process registry of named, versioned objects (graph functions, agents, tools).

``@graph_fn`` registers every graph under the ``graphfn`` namespace (and ``agent`` when asked);
``@tool`` registers under ``tool``. Re-registering the same ``(nspace, name, version)`` replaces
the entry, so re-running a notebook cell that redefines a graph just works.

Versions are PEP 440 versions, compared with :mod:`packaging.version` (what pip uses), so
"latest" means what it means on PyPI: ``1.0.post1 > 1.0``, ``1.0rc1 < 1.0``, and ``1.0`` and
``1.0.0`` are one version (registering one replaces the other; either spelling finds it). A
version that is not PEP 440 is refused at registration with a :class:`ConfigurationError` rather
than sorted by a guess: no ordering of ``"latest"`` against ``"2.0"`` would be right for everyone,
and a decorator that fails at import is easier to fix than a wrong "latest" at run time.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from packaging.version import InvalidVersion, Version

from aethergraph.errors import ConfigurationError, RegistryLookupError


class RegistryEntry(NamedTuple):
    """One registered object."""

    nspace: str
    name: str
    version: str
    obj: Any


def version_key(version: str) -> Version:
    """The PEP 440 version ``version`` names: its sort key, and its identity in the registry.

    Raises :class:`ConfigurationError` for a string that is not a PEP 440 version.
    """
    try:
        return Version(version)
    except InvalidVersion:
        raise ConfigurationError(
            f"registry version {version!r} is not a PEP 440 version; use a release number "
            "such as '1.2.0', optionally with a pre-, post- or dev-release suffix ('1.2.0rc1', "
            "'1.2.0.post1', '1.2.0.dev3') or a local label ('1.2.0+mylab')"
        ) from None


class Registry:
    """A thread-safe ``nspace -> name -> version -> obj`` map.

    Versions are keyed by their parsed :class:`~packaging.version.Version`, so equal versions
    spelled differently (``1.0`` / ``1.0.0``) are one entry; the spelling last registered is the
    one reported in :class:`RegistryEntry` and in messages.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, dict[Version, tuple[str, Any]]]] = {}
        self._lock = threading.Lock()

    def register(self, *, nspace: str, name: str, version: str, obj: Any) -> RegistryEntry:
        """Register ``obj``; an existing entry with the same key (an equal version) is replaced."""
        for label, value in (("nspace", nspace), ("name", name), ("version", version)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"registry {label} must be a non-empty string, got {value!r}"
                )
        key = version_key(version)
        with self._lock:
            self._entries.setdefault(nspace, {}).setdefault(name, {})[key] = (version, obj)
        return RegistryEntry(nspace, name, version, obj)

    def get(self, *, nspace: str, name: str, version: str | None = None) -> Any:
        """The object registered under ``nspace/name`` at ``version`` (``None``: the latest).

        "Latest" is the highest PEP 440 version, pre-releases included (a registry holds what
        this process defined, so a pre-release here was put there on purpose).
        """
        with self._lock:
            versions = self._entries.get(nspace, {}).get(name)
            if not versions:
                known = sorted(self._entries.get(nspace, {}))
                raise RegistryLookupError(
                    f"nothing registered as {nspace}/{name}; registered names in {nspace!r}: "
                    f"{known or 'none'}"
                )
            if version is None:
                return versions[max(versions)][1]
            try:
                key = version_key(version)
            except ConfigurationError as exc:
                raise RegistryLookupError(f"{nspace}/{name} has no version: {exc}") from None
            if key not in versions:
                raise RegistryLookupError(
                    f"{nspace}/{name} has no version {version!r}; available: "
                    f"{[versions[v][0] for v in sorted(versions)]}"
                )
            return versions[key][1]

    def list(self, nspace: str | None = None) -> list[RegistryEntry]:
        """Every entry (of one namespace when given), sorted by namespace, name and version."""
        with self._lock:
            spaces = [nspace] if nspace is not None else sorted(self._entries)
            out: list[RegistryEntry] = []
            for space in spaces:
                for name in sorted(self._entries.get(space, {})):
                    versions = self._entries[space][name]
                    for key in sorted(versions):
                        spelling, obj = versions[key]
                        out.append(RegistryEntry(space, name, spelling, obj))
            return out

    def unregister(self, *, nspace: str, name: str, version: str | None = None) -> None:
        """Remove one version, or every version of ``name`` when ``version`` is ``None``.

        Removing something that is not registered is a no-op, also for a version string that
        is not PEP 440 (nothing can be registered under it).
        """
        with self._lock:
            names = self._entries.get(nspace, {})
            if version is None:
                names.pop(name, None)
            elif name in names:
                try:
                    key = version_key(version)
                except ConfigurationError:
                    return
                names[name].pop(key, None)
                if not names[name]:
                    del names[name]


_REGISTRY = Registry()


def current_registry() -> Registry:
    """The process-wide registry that decorators register into."""
    return _REGISTRY
