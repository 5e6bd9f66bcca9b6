"""The copy engine: one tag (a manifest, or an index with its children) from a source
registry to a target registry, blobs first, the tag last.

For each manifest: HEAD every blob at the target and skip those present; mount those
this run already put (or is putting: it waits) in another repository of the target, so a
blob shared by many repositories is sent once per run; copy the rest as streams
(``maxparallel`` at once, under a shared bandwidth limit) in chunked uploads whose
Location and offset are saved after every chunk, so a broken transfer resumes where the
target says it stopped, in this run (``retries``) or the next. Child manifests are pushed
by digest, then the manifest under its tag, then the tag is read back and compared. A tag
whose digest is already the source's moves nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from registry.content.manifests import Descriptor, parse_manifest
from registry.errors import ManifestInvalid
from replicator.client import Manifest, RegistryClient
from replicator.errors import (
    DigestMismatch,
    RemoteError,
    RemoteNotFound,
    RemoteRangeError,
    RemoteUnreachable,
)
from replicator.streams import ChunkReader, RateLimit
from storage.digest import Digest

log = logging.getLogger("wharf.replicator")


@dataclass
class Counters:
    """What a run did so far."""

    tags_copied: int = 0
    tags_skipped: int = 0
    tags_deleted: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


class UploadState(Protocol):
    """Where unfinished uploads of a rule are remembered between runs."""

    async def upload(self, repository: str, digest: str) -> tuple[str, int] | None: ...

    async def save_upload(
        self, repository: str, digest: str, location: str, offset: int
    ) -> None: ...

    async def drop_upload(self, repository: str, digest: str) -> None: ...


class MemoryUploadState:
    """Upload state for one process (tests, runs without a database)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[str, int]] = {}

    async def upload(self, repository: str, digest: str) -> tuple[str, int] | None:
        return self.items.get((repository, digest))

    async def save_upload(self, repository: str, digest: str, location: str, offset: int) -> None:
        self.items[(repository, digest)] = (location, offset)

    async def drop_upload(self, repository: str, digest: str) -> None:
        self.items.pop((repository, digest), None)


def _retryable(e: RemoteError) -> bool:
    return isinstance(e, RemoteUnreachable | RemoteRangeError) or e.status >= 500


def _check_digest(manifest: Manifest, expected: str) -> Manifest:
    digest = Digest.parse(expected)
    actual = Digest.of(manifest.body, digest.algorithm)
    if actual != digest:
        raise DigestMismatch(f"manifest {expected} read as {actual}")
    return manifest


class Copier:
    """Copies tags from ``source`` to ``target``; one per run (it remembers where blobs
    already are at the target)."""

    def __init__(
        self,
        source: RegistryClient,
        target: RegistryClient,
        *,
        state: UploadState | None = None,
        parallel: int = 4,
        limit: RateLimit | None = None,
        retries: int = 3,
        chunk_size: int = 16 * 1024 * 1024,
        progress: Callable[[Counters], None] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.state = state or MemoryUploadState()
        self.blob_slots = asyncio.Semaphore(parallel)
        self.limit = limit
        self.retries = retries
        self.chunk_size = chunk_size
        self.progress = progress
        self.counters = Counters()
        self.present: dict[str, str] = {}  # digest -> a target repository holding it
        self._done: dict[tuple[str, str], asyncio.Future[None]] = {}
        # digest -> the transfer of it under way: one copy per run, the rest mounted
        self._sending: dict[str, asyncio.Future[None]] = {}

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.counters)

    # -- tags and manifests ------------------------------------------------------

    async def copy_tag(self, src_repo: str, dst_repo: str, tag: str) -> bool:
        """Make ``dst_repo:tag`` at the target the source's ``src_repo:tag``.

        Returns False when it already was (nothing moved)."""
        info = await self.source.head_manifest(src_repo, tag)
        if info is None:
            raise RemoteNotFound(f"{src_repo}:{tag} is not at the source", 404)
        current = await self.target.head_manifest(dst_repo, tag)
        if info.digest and current is not None and current.digest == info.digest:
            self.counters.tags_skipped += 1
            self._tick()
            return False
        manifest = await self.source.get_manifest(src_repo, info.digest or tag)
        digest = info.digest or manifest.digest or str(Digest.of(manifest.body))
        _check_digest(manifest, digest)
        await self._push_content(src_repo, dst_repo, manifest)
        pushed = await self.target.put_manifest(dst_repo, tag, manifest.body, manifest.media_type)
        after = await self.target.head_manifest(dst_repo, tag)
        if (pushed and pushed != digest) or after is None or after.digest != digest:
            found = after.digest if after else None
            raise DigestMismatch(f"{dst_repo}:{tag} reads back as {found}, expected {digest}")
        self.counters.tags_copied += 1
        self._tick()
        return True

    async def _push_content(self, src_repo: str, dst_repo: str, manifest: Manifest) -> None:
        """Everything ``manifest`` references, at the target: children (by digest) and blobs."""
        try:
            parsed = parse_manifest(manifest.body, manifest.media_type)
        except ManifestInvalid as e:
            raise RemoteError(f"{src_repo}: source manifest unusable: {e.message}") from e
        await asyncio.gather(*(self._ensure_child(src_repo, dst_repo, d) for d in parsed.manifests))
        await self._ensure_blobs(src_repo, dst_repo, parsed.blobs)

    async def _ensure_child(self, src_repo: str, dst_repo: str, child: Descriptor) -> None:
        digest = str(child.digest)
        if await self.target.head_manifest(dst_repo, digest) is not None:
            return
        manifest = _check_digest(await self.source.get_manifest(src_repo, digest), digest)
        await self._push_content(src_repo, dst_repo, manifest)
        await self.target.put_manifest(dst_repo, digest, manifest.body, manifest.media_type)

    # -- blobs ---------------------------------------------------------------------

    async def _ensure_blobs(self, src_repo: str, dst_repo: str, blobs: list[Descriptor]) -> None:
        unique = list({str(d.digest): d for d in blobs}.values())
        results = await asyncio.gather(
            *(self._ensure_blob(src_repo, dst_repo, d) for d in unique), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _ensure_blob(self, src_repo: str, dst_repo: str, blob: Descriptor) -> None:
        """The blob at the target, once per (repository, digest) however many ask."""
        key = (dst_repo, str(blob.digest))
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = asyncio.get_running_loop().create_future()
            try:
                async with self.blob_slots:
                    await self._place_blob(src_repo, dst_repo, blob)
            except BaseException as e:
                del self._done[key]
                done.set_exception(e)
                done.exception()  # retrieved: the waiters below re-raise it
                raise
            done.set_result(None)
        await asyncio.shield(done)

    async def _place_blob(self, src_repo: str, dst_repo: str, blob: Descriptor) -> None:
        digest = str(blob.digest)
        if await self.target.head_blob(dst_repo, digest) is not None:
            self.counters.blobs_skipped += 1
            self.present.setdefault(digest, dst_repo)
            self._tick()
            return
        location = None
        elsewhere = self.present.get(digest)
        sending = self._sending.get(digest)
        if elsewhere is None and sending is not None:
            await asyncio.shield(sending)  # being sent into another repository: mount it
            elsewhere = self.present.get(digest)
        if elsewhere is not None and elsewhere != dst_repo:
            location = await self.target.mount_blob(dst_repo, elsewhere, digest)
            if location is None:
                self.counters.blobs_mounted += 1
                self._tick()
                return
        sent = asyncio.get_running_loop().create_future()
        self._sending.setdefault(digest, sent)
        try:
            await self._transfer(src_repo, dst_repo, digest, blob.size, location)
            self.present[digest] = dst_repo
        finally:
            if self._sending.get(digest) is sent:
                del self._sending[digest]
            sent.set_result(None)  # waiters look at ``present`` (unset if this failed)
        self.counters.blobs_copied += 1
        self._tick()

    async def _transfer(
        self, src_repo: str, dst_repo: str, digest: str, size: int, location: str | None
    ) -> None:
        """Stream one blob in chunks, resuming a saved or broken upload from the target's
        reported offset."""
        if location is None:
            saved = await self.state.upload(dst_repo, digest)
            location = saved[0] if saved else None
        for attempt in range(self.retries + 1):
            try:
                offset = 0
                if location is not None:
                    try:
                        offset, location = await self.target.upload_status(dst_repo, location)
                    except RemoteNotFound:
                        location = None
                if location is None or offset > size:
                    location, offset = await self.target.start_upload(dst_repo), 0
                    await self.state.save_upload(dst_repo, digest, location, 0)
                if offset:
                    log.info("resuming %s into %s at %d of %d", digest, dst_repo, offset, size)
                location = await self._send(src_repo, dst_repo, digest, size, location, offset)
                await self.target.finish_upload(dst_repo, location, digest)
                await self.state.drop_upload(dst_repo, digest)
                return
            except RemoteError as e:
                if location is not None:
                    await self.state.save_upload(dst_repo, digest, location, 0)
                if attempt == self.retries or not _retryable(e):
                    raise
                log.info("copy of %s broke (%s): resuming", digest, e)
                await asyncio.sleep(min(0.2 * 2**attempt, 5))
        raise AssertionError("unreachable")

    async def _send(
        self, src_repo: str, dst_repo: str, digest: str, size: int, location: str, offset: int
    ) -> str:
        """PATCH the bytes from ``offset`` to the end; the upload's last Location."""
        if offset >= size:
            return location
        async with self.source.blob_stream(src_repo, digest, offset) as response:
            reader = ChunkReader(response.aiter_raw(), self.limit)
            while offset < size:
                n = min(self.chunk_size, size - offset)
                before = reader.read
                try:
                    received, location = await self.target.upload_chunk(
                        dst_repo, location, reader.take(n), offset, n
                    )
                finally:
                    self.counters.bytes += reader.read - before
                if received != offset + n:
                    raise RemoteRangeError(f"upload holds {received} bytes, not {offset + n}")
                offset = received
                await self.state.save_upload(dst_repo, digest, location, offset)
                self._tick()
        return location
