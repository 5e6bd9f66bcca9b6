"""Reading, mounting and deleting blobs in a repository."""

from __future__ import annotations

from collections.abc import AsyncIterator

from registry.errors import BlobUnknown, Unsupported
from registry.meta.store import MetadataStore
from registry.service.pins import DigestBusy, MountSourceGone, NoPins, Pins
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest


class BlobService:
    """Blob operations scoped to a repository (a blob is visible where it is linked)."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        delete_enabled: bool,
        pins: Pins | None = None,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.delete_enabled = delete_enabled
        self.pins: Pins = pins if pins is not None else NoPins(meta)  # online GC (#7)

    async def size(self, repository: str, digest: Digest) -> int:
        """The blob's size; :class:`BlobUnknown` unless it is linked to ``repository``."""
        # pinned: a HEAD before skipping an upload keeps the blob
        size = await self.pins.touch(repository, str(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        return size

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes of a blob already checked with :meth:`size`."""
        return self.blobs.open(digest, offset, length)

    async def redirect_url(self, digest: Digest) -> str | None:
        return await self.blobs.redirect_url(digest)

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        """Link a blob of ``source`` into ``repository``; its size, or None if not there."""
        size = await self.meta.blob_size(source, str(digest))
        if size is None:
            return None
        try:
            await self.blobs.stat(digest)
        except BlobNotFound:
            return None
        try:
            await self.meta.link_blob(repository, str(digest), size, from_repository=source)
        except (MountSourceGone, DigestBusy):  # collected meanwhile: the client uploads
            return None
        return size

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink a blob from ``repository``; the bytes go when garbage collection runs."""
        if not self.delete_enabled:
            raise Unsupported("deletes are disabled on this registry")
        if not await self.meta.unlink_blob(repository, str(digest)):
            raise BlobUnknown(detail={"digest": str(digest)})
