"""Upload sessions: bytes appended in chunks, verified, then moved into the blob store.

The bytes of an upload live in the storage driver (``uploads/<id>/data``), so any
process can continue an upload begun by another, or after a restart. A running hash
is kept in this process as an optimisation; when it is missing or stale the partial
file is hashed again from storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import time
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass

from storage.digest import Digest, Hasher, new_hasher
from storage.driver import PathNotFound, StorageDriver
from storage.layout import blob_path, upload_data_path, upload_dir, upload_info_path
from storage.pipeline import copy_hashing, hash_update

_UUID_CHARS = set("0123456789abcdef-")
# A filesystem out of space, or the registry's user over its quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
log = logging.getLogger("wharf.uploads")


def _out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


class UploadNotFound(Exception):
    """Raised for an upload id that does not exist (never did, finished or cancelled)."""


class UploadOffsetMismatch(Exception):
    """Raised when a chunk does not start where the upload currently ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upload is at offset {size}")
        self.size = size


class UploadDigestMismatch(Exception):
    """Raised when the uploaded bytes do not hash to the digest the client named."""

    def __init__(self, expected: Digest, actual: Digest) -> None:
        super().__init__(f"digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass
class _HashState:
    size: int
    hasher: Hasher


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """What is stored about an upload besides its bytes."""

    upload_id: str
    repository: str
    started: float


class UploadStore:
    """Creates, appends to, commits and cancels upload sessions on a storage driver."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._hashes: dict[str, _HashState] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    @staticmethod
    def _check_id(upload_id: str) -> str:
        if len(upload_id) != 36 or not set(upload_id) <= _UUID_CHARS:
            raise UploadNotFound(upload_id)
        return upload_id

    @staticmethod
    def new_id() -> str:
        """A fresh upload id (for :meth:`create`, when it must be known beforehand)."""
        return str(uuid.uuid4())

    async def create(self, repository: str, upload_id: str | None = None) -> str:
        """Start an empty upload for ``repository`` and return its id (``upload_id``,
        one of :meth:`new_id`, or a new one)."""
        upload_id = self._check_id(upload_id) if upload_id is not None else self.new_id()
        info = {"repository": repository, "started": time.time()}
        try:
            # Not synced: after a crash an upload without its info is unknown and the
            # client starts again; the bytes that matter are synced at commit.
            await self.driver.put_content(
                upload_info_path(upload_id), json.dumps(info).encode(), durable=False
            )
            writer = await self.driver.writer(upload_data_path(upload_id))
            await writer.close()
        except Exception:  # a full disk: leave no half-made session behind
            with contextlib.suppress(Exception):
                await self._drop(upload_id)
            raise
        self._hashes[upload_id] = _HashState(0, new_hasher())
        return upload_id

    async def info(self, upload_id: str) -> UploadInfo:
        """The upload's repository and start time; :class:`UploadNotFound` if unknown."""
        try:
            raw = json.loads(
                await self.driver.get_content(upload_info_path(self._check_id(upload_id)))
            )
        except PathNotFound:
            raise UploadNotFound(upload_id) from None
        return UploadInfo(upload_id, str(raw["repository"]), float(raw["started"]))

    async def size(self, upload_id: str) -> int:
        """Bytes received so far."""
        try:
            return (await self.driver.stat(upload_data_path(self._check_id(upload_id)))).size
        except PathNotFound:
            raise UploadNotFound(upload_id) from None

    async def append(
        self, upload_id: str, chunks: AsyncIterable[bytes], offset: int | None = None
    ) -> int:
        """Append a stream to the upload and return the new size.

        With ``offset`` the stream must start exactly where the upload ends, else
        :class:`UploadOffsetMismatch`. Bytes that arrived before the stream broke stay
        in the upload (the client may resume from the size it reads back). When the
        storage is full (``OSError`` ENOSPC or EDQUOT, raised) the upload is cancelled:
        its bytes are freed and its id is unknown from then on.
        """
        async with self._lock(upload_id):
            size = await self.size(upload_id)  # UploadNotFound before creating anything
            if offset is not None and offset != size:
                raise UploadOffsetMismatch(size)
            # Hash what is there before opening the writer: reading a file being written
            # may reorganise how a driver holds it (S3 completes its pending parts).
            state = await self._hash_state(upload_id, size)
            try:
                # The writer holds the upload against other processes until it is closed.
                writer = await self.driver.writer(upload_data_path(upload_id), append=True)
                try:
                    size = writer.size
                    if offset is not None and offset != size:
                        raise UploadOffsetMismatch(size)
                    if state.size != size:  # another process appended meanwhile
                        await writer.close()
                        state = await self._hash_state(upload_id, size)
                        writer = await self.driver.writer(upload_data_path(upload_id), append=True)
                    state.size = -1  # unknown until the copy ends cleanly
                    copied = await copy_hashing(chunks, writer, state.hasher)
                finally:
                    await writer.close()
            except OSError as e:
                if _out_of_space(e):
                    await self._give_up(upload_id, e)
                raise
            state.size = size + copied
            return writer.size

    async def commit(self, upload_id: str, digest: Digest, size: int | None = None) -> int:
        """Verify the upload against ``digest`` and move it into the blob store.

        Returns the blob size. Raises :class:`UploadDigestMismatch` (the upload is then
        deleted) or ``ValueError`` when ``size`` is given and differs.
        """
        async with self._lock(upload_id):
            started = time.perf_counter()
            actual_size = await self.size(upload_id)
            if digest.algorithm == "sha256":
                state = await self._hash_state(upload_id, actual_size)
                actual = Digest("sha256", state.hasher.hexdigest())
            else:
                actual = await self._rehash(upload_id, digest.algorithm)
            if actual != digest:
                await self._drop(upload_id)
                raise UploadDigestMismatch(digest, actual)
            if size is not None and size != actual_size:
                await self._drop(upload_id)
                raise ValueError(f"size mismatch: expected {size}, got {actual_size}")
            verified = time.perf_counter()
            try:
                # durable before it gets its content address and any metadata points at it
                await (await self.driver.writer(upload_data_path(upload_id), append=True)).commit()
                synced = time.perf_counter()
                await self.driver.move(upload_data_path(upload_id), blob_path(digest))
            except OSError as e:
                if _out_of_space(e):  # nothing visible yet: free the bytes, as on append
                    await self._give_up(upload_id, e)
                raise
            await self._drop(upload_id)
            log.debug(
                "upload %s committed as %s (%d bytes): verify %.1f ms, sync %.1f ms, move %.1f ms",
                upload_id,
                digest,
                actual_size,
                (verified - started) * 1000,
                (synced - verified) * 1000,
                (time.perf_counter() - synced) * 1000,
            )
            return actual_size

    async def ids(self) -> list[str]:
        """Ids of every upload session in storage."""
        try:
            paths = await self.driver.list("uploads")
        except PathNotFound:
            return []
        return [p.rsplit("/", 1)[1] for p in paths]

    async def purge(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Delete uploads started before the epoch time ``older_than``; return their ids.

        An upload whose info file is unreadable is judged by its directory's mtime.
        """
        purged: list[str] = []
        for upload_id in await self.ids():
            try:
                started = (await self.info(upload_id)).started
            except (UploadNotFound, ValueError, KeyError):
                try:
                    started = (await self.driver.stat(upload_dir(upload_id))).modified
                except PathNotFound:
                    continue
            if started >= older_than:
                continue
            purged.append(upload_id)
            if not dry_run:
                async with self._lock(upload_id):
                    await self._drop(upload_id)
        if not dry_run:
            # S3: multipart uploads whose upload was dropped before their state was saved
            aborted = await self.driver.abort_stale_writes("uploads", older_than)
            if aborted:
                log.info("aborted %d stale multipart writes under uploads/", aborted)
        return purged

    async def cancel(self, upload_id: str) -> None:
        """Delete the upload and its bytes."""
        async with self._lock(upload_id):
            await self.size(upload_id)
            await self._drop(upload_id)

    async def _give_up(self, upload_id: str, error: OSError) -> None:
        """Cancel an upload the storage has no room for, so that its bytes are freed."""
        try:
            size = (await self.driver.stat(upload_data_path(upload_id))).size
        except PathNotFound:
            size = 0
        await self._drop(upload_id)
        log.error(
            "storage is full: upload %s cancelled, its %d bytes freed (%s)",
            upload_id,
            size,
            error.strerror or error,
        )

    async def _drop(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        self._locks.pop(upload_id, None)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(upload_dir(upload_id))

    async def _hash_state(self, upload_id: str, size: int) -> _HashState:
        state = self._hashes.get(upload_id)
        if state is None or state.size != size:
            hasher = new_hasher()
            total = 0
            async for chunk in self.driver.reader(upload_data_path(upload_id), 0, size):
                await hash_update(hasher, chunk)
                total += len(chunk)
            state = self._hashes[upload_id] = _HashState(total, hasher)
        return state

    async def _rehash(self, upload_id: str, algorithm: str) -> Digest:
        hasher = new_hasher(algorithm)
        async for chunk in self.driver.reader(upload_data_path(upload_id)):
            await hash_update(hasher, chunk)
        return Digest(algorithm, hasher.hexdigest())
