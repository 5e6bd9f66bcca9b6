"""The pull-through mirror's blob service wrapper: a mirrored repository's blob not here
is served from upstream, as it arrives.

The request that takes the fetch's lease fetches it (:mod:`replicator.mirror_fetch`),
streaming the bytes to its client. Every other request follows that fetch: on a
filesystem it reads the upload as it grows, elsewhere (S3) it waits for the commit; once
the blob is stored it reads the blob. A fetcher that died leaves a lease that expires;
the next follower to see that takes the fetch over (from byte zero, into a new upload;
the dead one's is deleted) and its client goes on from where it was. Mounts and deletes
under a mirrored prefix are refused with ``DENIED``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from registry.errors import BlobUnknown, Unavailable
from registry.service.blobs import BlobService
from replicator.errors import RemoteError
from replicator.mirror_fetch import WAIT, Fetch, Origin, UpstreamFetches
from replicator.mirror_services import Delegating
from replicator.mirror_store import FetchLeases
from replicator.mirror_upstreams import Mirrors
from storage.blobs import BlobNotFound
from storage.digest import Digest
from storage.driver import PathNotFound
from storage.layout import upload_data_path
from storage.uploads import UploadStore

POLL = 0.2  # seconds between looks at a fetch run by another process


class MirroredBlobs(Delegating, BlobService):
    def __init__(
        self,
        inner: BlobService,
        mirrors: Mirrors,
        uploads: UploadStore,
        leases: FetchLeases,
    ) -> None:
        self._inner = inner
        self.mirrors = mirrors
        self.upload_store = uploads
        self.leases = leases
        # followers read a fetch's upload as it grows where the driver allows it: plain
        # files (S3 would have to complete the multipart upload to read it back)
        self.followable = uploads.driver.name == "filesystem"
        self.fetches = UpstreamFetches(uploads, leases, self.followable, self._stored, self._link)

    @property
    def upstream_fetches(self) -> int:
        """Fetches from upstream this process started."""
        return self.fetches.started

    async def size(self, repository: str, digest: Digest) -> int:
        found = self.mirrors.find(repository)
        try:
            return await BlobService.size(self, repository, digest)
        except BlobUnknown:
            if found is None:
                raise
        key = str(digest)
        try:  # fetched already, for another repository (bytes found bad: fetched again)
            if not await self.meta.quarantined(key):
                size = await self.blobs.stat(digest)
                await self.meta.link_blob(repository, key, size)
                return size
        except BlobNotFound:
            pass
        upstream, remote = found
        origin = self.fetches.origins.get(key)
        if origin is not None and origin.repository == repository:
            return origin.size
        try:
            remote_size = await upstream.client.head_blob(remote, key)
        except RemoteError as e:
            raise Unavailable(f"upstream {upstream.client.url}: {e}") from None
        if remote_size is None:
            raise BlobUnknown(detail={"digest": key})
        self.fetches.origins[key] = Origin(upstream, remote, repository, remote_size)
        return remote_size

    async def redirect_url(self, digest: Digest) -> str | None:
        key = str(digest)
        if self.fetches.knows(key) and not await self._stored(digest):
            return None  # not stored yet: served by this process as it arrives
        return await BlobService.redirect_url(self, digest)

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        key = str(digest)
        if not self.fetches.knows(key):
            return BlobService.stream(self, digest, offset, length)
        return self._mirrored(digest, offset, length)

    async def _mirrored(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes of a blob that may not be stored yet: from storage once it is; else
        fetched by this request (the lease taken), or following the fetch of another
        request, process or node (its upload read as it grows); taken over if that fetch
        died (its lease expired)."""
        key = str(digest)
        origin = self.fetches.origins.get(key)
        pos, end = offset, offset + length
        seen: Fetch | None = None  # the last fetch of this process looked at
        while pos < end:
            fetch = self.fetches.running.get(key)
            news = fetch.changed if fetch is not None else None
            if await self._stored(digest):
                if origin is not None:
                    await self._link(origin.repository, key, origin.size)
                async for chunk in BlobService.stream(self, digest, pos, end - pos):
                    yield chunk
                return
            if fetch is None:
                if seen is not None and seen.error is not None:
                    raise Unavailable(f"fetching {key} from upstream failed: {seen.error}")
                if origin is None:  # nothing to fetch from (not a mirrored request)
                    async for chunk in BlobService.stream(self, digest, pos, end - pos):
                        yield chunk
                    return
                up = origin.upstream
                state = await self.leases.state(up.client.url, key)
                if state is None or not state.live:  # nobody fetches it (any more): we do
                    tee = pos == offset == 0 and end == origin.size
                    dead = state.upload_id if state is not None else None
                    seen = await self.fetches.lead(key, origin, tee, dead)
                    if seen is not None and seen.queue is not None:
                        async for chunk in self.fetches.follow(seen):
                            yield chunk
                        return
                    continue
                # another process or node fetches it
                if self.followable and state.upload_id and state.written > pos:
                    async for chunk in self._read_upload(state.upload_id, pos, state.written, end):
                        pos += len(chunk)
                        yield chunk
                else:
                    await asyncio.sleep(POLL)
                continue
            seen = fetch
            if fetch.done:
                continue
            if self.followable and fetch.upload_id and fetch.written > pos:
                async for chunk in self._read_upload(fetch.upload_id, pos, fetch.written, end):
                    pos += len(chunk)
                    yield chunk
                continue
            assert news is not None
            with contextlib.suppress(TimeoutError):  # news, or look again anyway
                await asyncio.wait_for(news.wait(), WAIT)

    async def _read_upload(
        self, upload_id: str, pos: int, written: int, end: int
    ) -> AsyncIterator[bytes]:
        """Bytes ``pos`` to ``min(written, end)`` of an upload being written (nothing if it
        is gone: committed into the blob store, or given up)."""
        got = 0
        try:
            stop = min(written, end)
            reader = self.upload_store.driver.reader(upload_data_path(upload_id), pos, stop - pos)
            async for chunk in reader:
                got += len(chunk)
                yield chunk
        except PathNotFound:
            pass
        if not got:  # moved or cancelled meanwhile, or not visible here yet
            await asyncio.sleep(0.05)

    async def _stored(self, digest: Digest) -> bool:
        """Are good bytes of ``digest`` stored (bytes a scrub quarantined are fetched
        again: their upload's commit writes over them, the link lifts the quarantine)?"""
        try:
            await self.blobs.stat(digest)
        except BlobNotFound:
            return False
        return not await self.meta.quarantined(str(digest))

    async def _link(self, repository: str, key: str, size: int) -> None:
        if await self.meta.blob_size(repository, key) is None:
            # after a fetch's verified commit, or bytes stored and not quarantined
            await self.meta.link_blob(repository, key, size, fresh=True)

    async def close(self) -> None:
        """Stop the fetches under way, letting go of their leases (others take over)."""
        await self.fetches.close()

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        self.mirrors.refuse_writes(repository)
        return await BlobService.mount(self, repository, source, digest)

    async def delete(self, repository: str, digest: Digest) -> None:
        self.mirrors.refuse_writes(repository)
        await BlobService.delete(self, repository, digest)
