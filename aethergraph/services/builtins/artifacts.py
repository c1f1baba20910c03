"""``context.artifacts()``: a content-addressed store for files and blobs.

An artifact is named by the sha256 of its content (``artifact://sha256/<hex>``), so saving the
same content twice yields the same URI and stores it once, and a URI can be passed between nodes,
runs and processes as a plain string. Big data goes here; kv / memory / channel hold the URI.

A bad argument (not bytes, a malformed URI, an object that is not JSON) raises
:class:`~aethergraph.errors.ServiceUsageError`; an unknown URI :class:`ArtifactNotFoundError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from aethergraph.errors import ArtifactNotFoundError, ConfigurationError, ServiceUsageError

URI_PREFIX = "artifact://sha256/"
CHUNK_SIZE = 1024 * 1024
# Payloads larger than this are hashed / written / read on a thread, off the event loop (every
# store uses it, so one place decides what "too big to do inline" means).
INLINE_LIMIT = CHUNK_SIZE
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def make_uri(digest: str) -> str:
    """The URI of the artifact whose sha256 hex digest is ``digest``."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ServiceUsageError(
            f"make_uri() needs a 64-character lowercase sha256 hex digest, got {digest!r}."
        )
    return URI_PREFIX + digest


def parse_uri(uri: str) -> str:
    """The sha256 hex digest named by ``uri``."""
    if not isinstance(uri, str):
        raise ServiceUsageError(
            f"artifact URIs are str, got {type(uri).__name__}; "
            f"expected '{URI_PREFIX}<64 hex digits>' as returned by save_*()."
        )
    digest = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""
    if not _DIGEST_RE.fullmatch(digest):
        raise ServiceUsageError(
            f"malformed artifact URI {uri!r}; expected '{URI_PREFIX}<64 lowercase hex digits>' "
            "as returned by context.artifacts().save_*()."
        )
    return digest


class ArtifactStore(ABC):
    """Artifact store interface; the text/JSON helpers are built on the bytes methods."""

    @abstractmethod
    async def save_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its URI."""

    @abstractmethod
    async def load_bytes(self, uri: str) -> bytes:
        """The content of ``uri``; :class:`ArtifactNotFoundError` if it is not stored."""

    @abstractmethod
    async def exists(self, uri: str) -> bool:
        """Whether ``uri`` is stored."""

    @abstractmethod
    async def save_file(self, path: str | os.PathLike[str]) -> str:
        """Store the file at ``path`` (streamed, never read whole) and return its URI."""

    @abstractmethod
    async def load_file(self, uri: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the artifact to ``dest`` (creating parent directories) and return ``dest``."""

    async def save_text(self, text: str, encoding: str = "utf-8") -> str:
        """Store ``text`` encoded with ``encoding``."""
        if not isinstance(text, str):
            raise ServiceUsageError(
                f"artifacts().save_text() takes a str, got {type(text).__name__}; "
                "use save_bytes() for bytes or save_json() for structured data."
            )
        return await self.save_bytes(text.encode(encoding))

    async def load_text(self, uri: str, encoding: str = "utf-8") -> str:
        """The artifact decoded as text."""
        return (await self.load_bytes(uri)).decode(encoding)

    async def save_json(self, obj: Any) -> str:
        """Store ``obj`` as canonical JSON, so equal objects get equal URIs."""
        try:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ServiceUsageError(
                f"artifacts().save_json() needs a JSON-compatible object, got "
                f"{type(obj).__name__} ({exc}); convert it first, or use save_bytes()/save_file()."
            ) from exc
        return await self.save_bytes(text.encode("utf-8"))

    async def load_json(self, uri: str) -> Any:
        """The artifact parsed as JSON."""
        return json.loads(await self.load_bytes(uri))


def check_bytes(data: Any) -> bytes:
    """``data`` as bytes (bytearray / memoryview are copied), or :class:`ServiceUsageError`."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    hint = "use save_text() for str" if isinstance(data, str) else "use save_json() for objects"
    raise ServiceUsageError(
        f"artifacts().save_bytes() takes bytes, got {type(data).__name__}; {hint}."
    )


class FilesystemArtifactStore(ArtifactStore):
    """Artifacts under a local directory, at ``root/<first 2 hex>/<remaining 62 hex>``.

    Writes go to a temp file on the same filesystem (the object's directory, or ``root`` while a
    streamed file is still being hashed) and are moved into place with ``os.replace``, so
    readers never see a partial object, even with concurrent writers.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        if not isinstance(root, str | os.PathLike):
            raise ConfigurationError(
                f"FilesystemArtifactStore(root) needs a path, got {type(root).__name__}."
            )
        self.root = Path(root)

    def local_path(self, uri: str) -> Path:
        """Where the object named by ``uri`` lives (whether or not it exists yet)."""
        digest = parse_uri(uri)
        return self._object_path(digest)

    def _existing_path(self, uri: str) -> Path:
        path = self.local_path(uri)
        if not path.is_file():
            raise ArtifactNotFoundError(
                f"artifact {uri} is not in the store at {self.root}; check that it was saved with "
                "the same artifacts root (AETHERGRAPH_ARTIFACTS_DIR) and not deleted."
            )
        return path

    def _object_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def _write_temp(self, directory: Path, chunks: Iterable[bytes], hasher: _Hasher) -> Path:
        """Write ``chunks`` to a fresh temp file in ``directory``, feeding them to ``hasher``."""
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as tmp:
                for chunk in chunks:
                    hasher.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return Path(tmp_name)

    def _place(self, tmp: Path, digest: str) -> None:
        """Move a finished temp file into place atomically, unless the object already exists."""
        target = self._object_path(digest)
        try:
            if target.is_file():
                return  # content-addressed: the existing object already has this content
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _save_bytes_sync(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._object_path(digest)
        if not target.is_file():
            self._place(self._write_temp(target.parent, (data,), hashlib.sha256()), digest)
        return make_uri(digest)

    def _save_file_sync(self, path: Path) -> str:
        if not path.is_file():
            raise FileNotFoundError(
                f"artifacts().save_file() found no file at {str(path)!r}; pass an existing file."
            )
        # One streaming pass: copy to a temp file under root while hashing, then move it to its
        # content address (same filesystem, so os.replace stays atomic).
        hasher = hashlib.sha256()
        with path.open("rb") as src:
            tmp = self._write_temp(self.root, iter(lambda: src.read(CHUNK_SIZE), b""), hasher)
        digest = hasher.hexdigest()
        self._place(tmp, digest)
        return make_uri(digest)

    def _load_file_sync(self, uri: str, dest: Path) -> Path:
        src = self._existing_path(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    async def save_bytes(self, data: bytes) -> str:
        data = check_bytes(data)
        if len(data) > INLINE_LIMIT:
            return await asyncio.to_thread(self._save_bytes_sync, data)
        return self._save_bytes_sync(data)

    async def load_bytes(self, uri: str) -> bytes:
        path = self._existing_path(uri)
        if path.stat().st_size > INLINE_LIMIT:
            return await asyncio.to_thread(path.read_bytes)
        return path.read_bytes()

    async def exists(self, uri: str) -> bool:
        return self.local_path(uri).is_file()

    async def save_file(self, path: str | os.PathLike[str]) -> str:
        if not isinstance(path, str | os.PathLike):
            raise ServiceUsageError(
                f"artifacts().save_file() takes a path, got {type(path).__name__}; "
                "use save_bytes()/save_text() for in-memory data."
            )
        return await asyncio.to_thread(self._save_file_sync, Path(path))

    async def load_file(self, uri: str, dest: str | os.PathLike[str]) -> Path:
        if not isinstance(dest, str | os.PathLike):
            raise ServiceUsageError(
                f"artifacts().load_file() dest must be a path, got {type(dest).__name__}."
            )
        parse_uri(uri)  # fail fast on a malformed URI, before a thread hop
        return await asyncio.to_thread(self._load_file_sync, uri, Path(dest))


__all__ = [
    "CHUNK_SIZE",
    "INLINE_LIMIT",
    "URI_PREFIX",
    "ArtifactStore",
    "FilesystemArtifactStore",
    "check_bytes",
    "make_uri",
    "parse_uri",
]
