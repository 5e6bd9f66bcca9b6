"""The storage driver interface: a flat namespace of paths holding bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """Base class of the errors a driver raises."""


class StorageUnavailable(StorageError):
    """Raised when the storage backend failed or could not be reached (try again later)."""


class PathNotFound(StorageError):
    """Raised when a path does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPath(StorageError):
    """Raised for a path that is not absolute-free, normalised and safe."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` tells of a path."""

    path: str
    size: int
    is_dir: bool
    modified: float


class FileWriter(Protocol):
    """An open file being written. Nothing is visible at its path until :meth:`commit`."""

    @property
    def size(self) -> int:
        """Bytes in the file so far, including what was there before an append."""
        ...

    async def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    def write_blocking(self, parts: list[bytes]) -> None:
        """Append ``parts`` from a worker thread (never call this on the event loop)."""
        ...

    async def commit(self) -> None:
        """Flush and make the content durable at the writer's path."""
        ...

    async def cancel(self) -> None:
        """Drop what this writer wrote (the whole file)."""
        ...

    async def close(self) -> None:
        """Flush and release; the file stays and may be appended to later."""
        ...


class StorageDriver(Protocol):
    """Bytes at slash-separated relative paths (``blobs/sha256/ab/abcd.../data``).

    Every method raises :class:`PathNotFound` for a missing path and
    :class:`InvalidPath` for a path with empty, ``.`` or ``..`` segments.
    """

    name: str

    async def get_content(self, path: str) -> bytes:
        """The whole content of a small file."""
        ...

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        """Write a small file atomically (readers see the old or the new content).

        With ``durable`` the file is on disk (synced) before this returns; without it,
        a crash may lose it (for state that can be rebuilt or given up).
        """
        ...

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all, if None) of ``path`` from ``offset``."""
        ...

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """Open ``path`` for writing, truncating unless ``append``."""
        ...

    async def stat(self, path: str) -> FileInfo:
        """Size and kind of ``path``."""
        ...

    async def list(self, path: str) -> list[str]:
        """Direct children of the directory ``path``, as full paths."""
        ...

    async def move(self, source: str, dest: str) -> None:
        """Atomically rename ``source`` to ``dest``, replacing ``dest``."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree."""
        ...

    async def delete_many(self, paths: Sequence[str]) -> Sequence[str]:
        """Delete files (not directories) in batches; missing ones are skipped.

        Returns the paths that could not be deleted (empty when all went).
        """
        ...

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file under the directory ``path``, recursively, in no set order.

        A missing ``path`` yields nothing. Meant for large listings (garbage collection):
        results come in pages, never as one list of everything.
        """
        ...

    async def redirect_url(self, path: str) -> str | None:
        """A URL a client may fetch ``path`` from directly, or None."""
        ...

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        """Give up writes under ``path`` begun before the epoch time ``older_than`` that no
        file records any more (S3: multipart uploads left by a crash); return how many.
        Drivers whose writes are plain files have none."""
        ...


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe relative path; raise :class:`InvalidPath` otherwise."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidPath(f"invalid storage path {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidPath(f"invalid storage path {path!r}")
    return path
