"""The content-addressed blob store: bytes by digest, shared by all repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator

from storage.digest import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.layout import blob_path


class BlobNotFound(Exception):
    """Raised when no blob with the digest is stored."""

    def __init__(self, digest: Digest) -> None:
        super().__init__(f"blob unknown: {digest}")
        self.digest = digest


class BlobStore:
    """Blobs by digest. Knows nothing of repositories: links live in the metadata."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def stat(self, digest: Digest) -> int:
        """The size of a stored blob; raise :class:`BlobNotFound` if absent."""
        try:
            return (await self.driver.stat(blob_path(digest))).size
        except PathNotFound:
            raise BlobNotFound(digest) from None

    def open(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream a blob (or a range of it). Raises :class:`BlobNotFound` on first read."""
        return self._open(digest, offset, length)

    async def _open(self, digest: Digest, offset: int, length: int | None) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.driver.reader(blob_path(digest), offset, length):
                yield chunk
        except PathNotFound:
            raise BlobNotFound(digest) from None

    async def get(self, digest: Digest) -> bytes:
        """The bytes of a small blob (a manifest or a config)."""
        try:
            return await self.driver.get_content(blob_path(digest))
        except PathNotFound:
            raise BlobNotFound(digest) from None

    async def put(self, data: bytes, algorithm: str = "sha256", overwrite: bool = False) -> Digest:
        """Store small ``data`` under its digest (idempotent) and return the digest; a
        file of the right size is taken to hold it, unless ``overwrite`` (bytes found
        bad are written again)."""
        digest = Digest.of(data, algorithm)
        path = blob_path(digest)
        try:
            if not overwrite and (await self.driver.stat(path)).size == len(data):
                return digest
        except PathNotFound:
            pass
        await self.driver.put_content(path, data)
        return digest

    async def delete(self, digest: Digest) -> None:
        """Remove a blob's bytes; raise :class:`BlobNotFound` if absent."""
        try:
            await self.driver.delete(blob_path(digest).rsplit("/", 1)[0])
        except PathNotFound:
            raise BlobNotFound(digest) from None

    async def redirect_url(self, digest: Digest) -> str | None:
        """A URL the client can fetch the blob from directly, if the driver offers one."""
        return await self.driver.redirect_url(blob_path(digest))
