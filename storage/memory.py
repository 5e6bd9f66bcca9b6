"""An in-memory storage driver, for unit tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from storage.driver import FileInfo, FileWriter, PathNotFound, check_path


class MemoryWriter:
    """A :class:`FileWriter` buffering into the driver's dict."""

    def __init__(self, driver: InMemoryDriver, path: str, initial: bytes) -> None:
        self._driver = driver
        self._path = path
        self._buf = bytearray(initial)
        self._driver._files[path] = bytes(self._buf)

    @property
    def size(self) -> int:
        return len(self._buf)

    async def write(self, data: bytes) -> None:
        self._buf += data

    def write_blocking(self, parts: list[bytes]) -> None:
        for part in parts:
            self._buf += part

    async def commit(self) -> None:
        await self.close()

    async def cancel(self) -> None:
        self._driver._files.pop(self._path, None)

    async def close(self) -> None:
        self._driver._files[self._path] = bytes(self._buf)
        self._driver._mtimes[self._path] = time.time()


class InMemoryDriver:
    """Files in a dict. Directories exist implicitly, as prefixes of file paths."""

    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._mtimes: dict[str, float] = {}

    async def get_content(self, path: str) -> bytes:
        try:
            return self._files[check_path(path)]
        except KeyError:
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        self._files[check_path(path)] = bytes(data)
        self._mtimes[path] = time.time()

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        end = len(data) if length is None else min(len(data), offset + length)
        step = 1024 * 1024
        for start in range(offset, end, step):
            yield data[start : min(end, start + step)]

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        initial = self._files.get(check_path(path), b"") if append else b""
        return MemoryWriter(self, path, initial)

    def _is_dir(self, path: str) -> bool:
        prefix = path + "/"
        return any(p.startswith(prefix) for p in self._files)

    async def stat(self, path: str) -> FileInfo:
        check_path(path)
        if path in self._files:
            return FileInfo(path, len(self._files[path]), False, self._mtimes.get(path, 0.0))
        if self._is_dir(path):
            return FileInfo(path, 0, True, 0.0)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        check_path(path)
        prefix = path + "/"
        children = {
            prefix + p[len(prefix) :].split("/", 1)[0] for p in self._files if p.startswith(prefix)
        }
        if not children:
            raise PathNotFound(path)
        return sorted(children)

    async def move(self, source: str, dest: str) -> None:
        try:
            self._files[check_path(dest)] = self._files.pop(check_path(source))
        except KeyError:
            raise PathNotFound(source) from None
        self._mtimes[dest] = self._mtimes.pop(source, time.time())

    async def delete(self, path: str) -> None:
        check_path(path)
        prefix = path + "/"
        doomed = [p for p in self._files if p == path or p.startswith(prefix)]
        if not doomed:
            raise PathNotFound(path)
        for p in doomed:
            del self._files[p]
            self._mtimes.pop(p, None)

    async def delete_many(self, paths: Sequence[str]) -> Sequence[str]:
        for p in paths:
            self._files.pop(check_path(p), None)
            self._mtimes.pop(p, None)
        return []

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        prefix = check_path(path) + "/"
        for p in [p for p in self._files if p.startswith(prefix)]:
            data = self._files.get(p)
            if data is not None:
                yield FileInfo(p, len(data), False, self._mtimes.get(p, 0.0))

    async def redirect_url(self, path: str) -> str | None:
        return None

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return 0
