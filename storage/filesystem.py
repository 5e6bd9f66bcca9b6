"""A storage driver on a local filesystem, with aiofiles for the I/O."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import aiofiles
import aiofiles.os

from storage.driver import FileInfo, FileWriter, PathNotFound, check_path

READ_CHUNK = 4 * 1024 * 1024
# Every this many bytes written, a writer syncs the file in the background (one sync
# at a time), so that the disk works while the upload streams in and the sync at commit
# finds little left to do. (Writeback hints alone do not help here: what costs is the
# flush of the disk's cache, which only a sync asks for.)
SYNC_EVERY = 8 * 1024 * 1024
_IOV_MAX = 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(full: Path, data: bytes, durable: bool = True) -> None:
    """Write a temporary file, rename it over ``full``; when ``durable``, fsync the file
    before and the directory after the rename."""
    full.parent.mkdir(parents=True, exist_ok=True)
    tmp = full.with_name(f".{full.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, full)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    if durable:
        _fsync_dir(full.parent)


def _move_durably(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (creating its directory) and sync the directory, in one
    hop to a thread."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    _fsync_dir(dst.parent)


def _open_locked(full: Path, append: bool) -> int:
    """Open for writing and take an exclusive lock, held until the descriptor is closed,
    so two processes never append to one file at once."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
    fd = os.open(full, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not append:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


class FilesystemWriter:
    """A :class:`FileWriter` on a local file descriptor opened for appending."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self._path = path
        self._fd: int | None = fd
        self._size = size
        # Synced per 8 MiB of the file, whichever writer wrote them, so an upload sent as
        # many small PATCHes still has little left to sync at the end.
        self._synced_to = size - size % SYNC_EVERY
        self._syncer: ThreadPoolExecutor | None = None
        self._syncing: Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    def write_blocking(self, parts: list[bytes]) -> None:
        assert self._fd is not None, "writer is closed"
        views = [memoryview(p) for p in parts if p]
        while views:
            written = os.writev(self._fd, views[:_IOV_MAX])
            self._size += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]
        if self._size - self._synced_to >= SYNC_EVERY and (
            self._syncing is None or self._syncing.done()
        ):
            _raise_failed(self._syncing)  # before a new sync takes its place
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(1, thread_name_prefix="wharf-sync")
            self._syncing = self._syncer.submit(os.fdatasync, self._fd)
            self._synced_to = self._size

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.write_blocking, [data])

    async def commit(self) -> None:
        try:
            if self._fd is not None:
                await asyncio.to_thread(os.fdatasync, self._fd)
        finally:  # closed even when the sync fails: an open file keeps its space
            await self.close()

    async def cancel(self) -> None:
        try:
            await self.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(self._path)

    async def close(self) -> None:
        syncing, self._syncing = self._syncing, None
        if self._syncer is not None:  # the descriptor stays open until its sync is done
            syncer, self._syncer = self._syncer, None
            await asyncio.to_thread(syncer.shutdown, wait=True)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        _raise_failed(syncing)


def _raise_failed(sync: Future[None] | None) -> None:
    """Raise the error of a finished background sync. The kernel reports a writeback
    error (ENOSPC, EIO) once, to that sync: lost, a later sync would succeed and the
    bytes be acknowledged without being on disk."""
    error = sync.exception() if sync is not None and not sync.cancelled() else None
    if error is not None:
        raise error


class FilesystemDriver:
    """Paths under one root directory. Small files are replaced by an atomic rename."""

    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _full(self, path: str) -> Path:
        return self.root / check_path(path)

    async def get_content(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread(self._full(path).read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        await asyncio.to_thread(_write_atomic, self._full(path), data, durable)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            f = await aiofiles.open(self._full(path), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        try:
            if offset:
                await f.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await f.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await f.close()

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        full = self._full(path)
        await aiofiles.os.makedirs(full.parent, exist_ok=True)
        fd = await asyncio.to_thread(_open_locked, full, append)
        size = os.fstat(fd).st_size
        return FilesystemWriter(full, fd, size)

    async def stat(self, path: str) -> FileInfo:
        try:
            st = await aiofiles.os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        is_dir = (st.st_mode & 0o170000) == 0o040000
        return FileInfo(path, 0 if is_dir else st.st_size, is_dir, st.st_mtime)

    async def list(self, path: str) -> list[str]:
        full = self._full(path)
        try:
            names = await aiofiles.os.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        return sorted(f"{path}/{n}" for n in names if not n.endswith(".tmp"))

    async def move(self, source: str, dest: str) -> None:
        try:
            await asyncio.to_thread(_move_durably, self._full(source), self._full(dest))
        except FileNotFoundError:
            raise PathNotFound(source) from None

    async def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            if await aiofiles.os.path.isdir(full):
                await asyncio.to_thread(shutil.rmtree, full)
            else:
                await aiofiles.os.remove(full)
        except FileNotFoundError:
            raise PathNotFound(path) from None

    async def delete_many(self, paths: Sequence[str]) -> Sequence[str]:
        fulls = [(p, self._full(p)) for p in paths]
        return await asyncio.to_thread(_unlink_all, fulls)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        pending = [(path, self._full(path))]
        while pending:
            # many small directories (one per blob) per thread hop, a page at a time
            page = await asyncio.to_thread(_scan_page, pending, WALK_PAGE)
            for info in page:
                yield info

    async def redirect_url(self, path: str) -> str | None:
        return None

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return 0

    def local_path(self, path: str) -> Path:
        """The file behind ``path`` on this machine (for zero-copy sends)."""
        return self._full(path)


def _unlink_all(paths: list[tuple[str, Path]]) -> list[str]:
    failed: list[str] = []
    for rel, full in paths:
        try:
            full.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(rel)
    return failed


WALK_PAGE = 1000


def _scan_page(pending: list[tuple[str, Path]], limit: int) -> list[FileInfo]:
    """Scan directories from ``pending`` (adding the subdirectories found) until ``limit``
    files are found or none is left."""
    page: list[FileInfo] = []
    while pending and len(page) < limit:
        rel, directory = pending.pop()
        try:
            entries = _scan(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name, is_dir, size, mtime in entries:
            if is_dir:
                pending.append((f"{rel}/{name}", directory / name))
            elif not name.endswith(".tmp"):
                page.append(FileInfo(f"{rel}/{name}", size, False, mtime))
    return page


def _scan(directory: Path) -> list[tuple[str, bool, int, float]]:
    out: list[tuple[str, bool, int, float]] = []
    with os.scandir(directory) as it:
        for entry in it:
            try:
                if entry.is_dir(follow_symlinks=False):
                    out.append((entry.name, True, 0, 0.0))
                else:
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.name, False, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue
    return out
