"""Blob uploads: start, append chunks, finish with a digest, cancel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable

from registry.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    Unavailable,
)
from registry.gc.guard import PushGuard
from registry.meta.gc import DigestBusy
from registry.meta.store import MetadataStore
from storage.digest import Digest
from storage.uploads import (
    UploadDigestMismatch,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadStore,
)


class UploadService:
    """Upload sessions bound to a repository; a blob is linked only once verified."""

    guard: PushGuard | None = None  # pins for online GC, set at startup (issue #7)

    def __init__(self, meta: MetadataStore, uploads: UploadStore) -> None:
        self.meta = meta
        self.uploads = uploads

    async def start(self, repository: str) -> str:
        """Open an upload session and return its id."""
        return await self.uploads.create(repository)

    async def _check(self, repository: str, upload_id: str) -> None:
        try:
            info = await self.uploads.info(upload_id)
        except UploadNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id[:64]}) from None
        if info.repository != repository:
            raise BlobUploadUnknown(detail={"uuid": upload_id})

    async def size(self, repository: str, upload_id: str) -> int:
        """Bytes received so far; :class:`BlobUploadUnknown` for an unknown session."""
        await self._check(repository, upload_id)
        try:
            return await self.uploads.size(upload_id)
        except UploadNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None

    async def append(
        self, repository: str, upload_id: str, body: AsyncIterable[bytes], offset: int | None
    ) -> int:
        """Append a chunk. With ``offset`` (from Content-Range) it must continue the upload."""
        await self._check(repository, upload_id)
        try:
            return await self.uploads.append(upload_id, body, offset)
        except UploadNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        except UploadOffsetMismatch as e:
            raise RangeInvalid(
                f"chunk does not start at the upload's end (offset {e.size})",
                headers=_range_headers(e.size),
            ) from None

    async def finish(self, repository: str, upload_id: str, digest: Digest) -> int:
        """Verify the upload against ``digest``, store the blob and link it; return its size."""
        await self._check(repository, upload_id)
        if self.guard is not None:  # before the bytes take their place (docs/gc.md)
            await self.guard.pin([str(digest)])
        try:
            size = await self.uploads.commit(upload_id, digest)
        except UploadNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        except UploadDigestMismatch as e:
            raise DigestInvalid(
                detail={"expected": str(e.expected), "actual": str(e.actual)}
            ) from None
        except ValueError as e:
            raise SizeInvalid(str(e)) from None
        try:
            await self.meta.link_blob(repository, str(digest), size)
        except DigestBusy:  # stalled longer than the GC grace period: its bytes may be gone
            raise Unavailable("the blob was garbage collected meanwhile; upload it again") from None
        return size

    async def cancel(self, repository: str, upload_id: str) -> None:
        """Abort an upload and delete what it received."""
        await self._check(repository, upload_id)
        try:
            await self.uploads.cancel(upload_id)
        except UploadNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None

    async def monolithic(
        self, repository: str, body: AsyncIterable[bytes], digest: Digest, length: int | None
    ) -> int:
        """Receive a whole blob in one request, verify it and link it."""
        upload_id = await self.uploads.create(repository)
        try:
            size = await self.uploads.append(upload_id, body)
            if length is not None and size != length:
                raise SizeInvalid(f"received {size} bytes, Content-Length said {length}")
            return await self.finish(repository, upload_id, digest)
        except BaseException:
            with contextlib.suppress(UploadNotFound):
                await self.uploads.cancel(upload_id)
            raise


def _range_headers(size: int) -> dict[str, str]:
    return {"Range": f"0-{max(size - 1, 0)}"}


def upload_range(size: int) -> str:
    """The ``Range`` header value describing an upload of ``size`` bytes."""
    return _range_headers(size)["Range"]
