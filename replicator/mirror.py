"""The pull-through mirror: repositories under a prefix (or the whole registry, with
``proxy.remoteurl``) mirror an upstream registry.

Installed by :func:`install_mirrors` in place of the plain services when mirrors are
configured. A manifest not here is fetched on first pull, its bytes stored
content-addressed and noted (tag or digest -> digest) in ``mirror_manifests``; a tag is
checked again with a HEAD once older than the mirror's ``ttl``, and the cached one is
served when the upstream cannot be reached. A blob not here is fetched once per process
however many pull it at once: the first client is streamed the bytes as they arrive
while they are written into an upload, which is verified, committed and linked at the
end; clients arriving meanwhile wait for it and read the stored blob. (Separate worker
processes or nodes may each fetch it once.) Pushes and deletes under a mirrored prefix
are refused with ``DENIED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from registry.api.context import Services
from registry.config import Settings
from registry.content.names import parse_reference
from registry.durations import parse_duration
from registry.errors import BlobUnknown, Denied, ManifestUnknown, Unavailable
from registry.meta.mirror import MirroredManifest, MirrorStore
from registry.meta.records import ManifestRecord
from registry.service.blobs import BlobService
from registry.service.manifests import ManifestService
from registry.service.uploads import UploadService
from replicator.client import RegistryClient
from replicator.errors import RemoteError, RemoteNotFound
from storage.blobs import BlobNotFound
from storage.digest import Digest, InvalidDigest
from storage.uploads import UploadStore

log = logging.getLogger("wharf.mirror")
QUEUE_CHUNKS = 64  # chunks buffered for the client a fetch streams to


@dataclass
class Upstream:
    prefix: str  # "" mirrors the whole registry
    client: RegistryClient
    ttl: float


class Mirrors:
    """The configured upstreams; finds the one serving a repository (longest prefix)."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        self.upstreams = sorted(upstreams, key=lambda u: -len(u.prefix))

    def find(self, repository: str) -> tuple[Upstream, str] | None:
        """(upstream, repository name there) for a mirrored repository, else None."""
        for up in self.upstreams:
            if not up.prefix:
                return up, repository
            if repository.startswith(up.prefix + "/"):
                return up, repository[len(up.prefix) + 1 :]
        return None

    def refuse_writes(self, repository: str) -> None:
        found = self.find(repository)
        if found is not None:
            raise Denied(
                f"{repository} mirrors {found[0].client.url}: pushes and deletes are refused"
            )

    async def close(self) -> None:
        for up in self.upstreams:
            await up.client.close()


@dataclass
class _Origin:
    upstream: Upstream
    remote: str  # repository name at the upstream
    repository: str  # here
    size: int


@dataclass
class _Fetch:
    """One blob being fetched from upstream."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    queue: asyncio.Queue[bytes | BaseException | None] | None = None
    subscribed: bool = False


class _Delegating:
    """Attributes not set on the wrapper are the wrapped service's (state set later on
    the wrapper, such as another feature's guard, stays on the wrapper)."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


class MirroredBlobs(_Delegating, BlobService):
    def __init__(self, inner: BlobService, mirrors: Mirrors, uploads: UploadStore) -> None:
        self._inner = inner
        self.mirrors = mirrors
        self.upload_store = uploads
        self._origins: dict[str, _Origin] = {}
        self._fetches: dict[str, _Fetch] = {}
        self.upstream_fetches = 0

    async def size(self, repository: str, digest: Digest) -> int:
        found = self.mirrors.find(repository)
        try:
            return await BlobService.size(self, repository, digest)
        except BlobUnknown:
            if found is None:
                raise
        key = str(digest)
        try:  # fetched already, for another repository
            size = await self.blobs.stat(digest)
            await self.meta.link_blob(repository, key, size)
            return size
        except BlobNotFound:
            pass
        upstream, remote = found
        origin = self._origins.get(key)
        if origin is not None and origin.repository == repository:
            return origin.size
        try:
            remote_size = await upstream.client.head_blob(remote, key)
        except RemoteError as e:
            raise Unavailable(f"upstream {upstream.client.url}: {e}") from None
        if remote_size is None:
            raise BlobUnknown(detail={"digest": key})
        self._origins[key] = _Origin(upstream, remote, repository, remote_size)
        return remote_size

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        key = str(digest)
        if key not in self._origins and key not in self._fetches:
            return BlobService.stream(self, digest, offset, length)
        return self._mirrored(digest, offset, length)

    async def _mirrored(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        key = str(digest)
        fetch = self._fetches.get(key)
        if fetch is None:
            origin = self._origins.get(key)
            stored = await self._stored(digest)
            fetch = self._fetches.get(key)  # another request may have started it meanwhile
            if fetch is None and (stored or origin is None):
                async for chunk in BlobService.stream(self, digest, offset, length):
                    yield chunk
                return
            if fetch is None:
                assert origin is not None
                fetch = self._start(key, origin, tee=offset == 0 and length == origin.size)
                if fetch.queue is not None:
                    async for chunk in self._follow(fetch):
                        yield chunk
                    return
        await fetch.done.wait()
        if fetch.error is not None:
            raise Unavailable(f"fetching {key} from upstream failed: {fetch.error}")
        async for chunk in BlobService.stream(self, digest, offset, length):
            yield chunk

    async def _stored(self, digest: Digest) -> bool:
        try:
            await self.blobs.stat(digest)
            return True
        except BlobNotFound:
            return False

    @staticmethod
    async def _follow(fetch: _Fetch) -> AsyncIterator[bytes]:
        """The bytes of a fetch as they arrive (for the client that started it)."""
        assert fetch.queue is not None
        try:
            while True:
                item = await fetch.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise Unavailable(f"fetching from upstream failed: {item}")
                yield item
        finally:
            fetch.subscribed = False  # a client gone: the fetch goes on without it
            while not fetch.queue.empty():
                fetch.queue.get_nowait()

    def _start(self, key: str, origin: _Origin, tee: bool) -> _Fetch:
        fetch = _Fetch()
        if tee:
            fetch.queue = asyncio.Queue(QUEUE_CHUNKS)
            fetch.subscribed = True
        self._fetches[key] = fetch
        task = asyncio.create_task(self._fetch(key, origin, fetch), name=f"mirror-{key[:19]}")
        task.add_done_callback(lambda _t: None)
        return fetch

    async def _fetch(self, key: str, origin: _Origin, fetch: _Fetch) -> None:
        end: bytes | BaseException | None = None
        try:
            self.upstream_fetches += 1
            started = time.monotonic()
            size = await self._download(key, origin, fetch)
            await self.meta.link_blob(origin.repository, key, size)
            log.info(
                "mirrored %s from %s (%d bytes, %.1f s)",
                key,
                origin.upstream.client.url,
                size,
                time.monotonic() - started,
            )
        except Exception as e:
            log.warning("mirror fetch of %s failed: %s", key, e)
            fetch.error = end = e
        finally:
            self._origins.pop(key, None)
            self._fetches.pop(key, None)
            fetch.done.set()
            if fetch.subscribed and fetch.queue is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    fetch.queue.put_nowait(end)

    async def _download(self, key: str, origin: _Origin, fetch: _Fetch) -> int:
        upload_id = await self.upload_store.create(origin.repository)
        try:
            async with origin.upstream.client.blob_stream(origin.remote, key) as response:

                async def chunks() -> AsyncIterator[bytes]:
                    async for chunk in response.aiter_raw():
                        if fetch.subscribed and fetch.queue is not None:
                            await fetch.queue.put(chunk)
                        yield chunk

                await self.upload_store.append(upload_id, chunks())
            return await self.upload_store.commit(upload_id, Digest.parse(key), origin.size)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.upload_store.cancel(upload_id)
            raise

    async def mount(self, repository: str, source: str, digest: Digest) -> int | None:
        self.mirrors.refuse_writes(repository)
        return await BlobService.mount(self, repository, source, digest)

    async def delete(self, repository: str, digest: Digest) -> None:
        self.mirrors.refuse_writes(repository)
        await BlobService.delete(self, repository, digest)


def _record(m: MirroredManifest) -> ManifestRecord:
    return ManifestRecord(m.digest, m.media_type, m.size)


class MirroredManifests(_Delegating, ManifestService):
    def __init__(self, inner: ManifestService, mirrors: Mirrors, store: MirrorStore) -> None:
        self._inner = inner
        self.mirrors = mirrors
        self.store = store

    async def put(
        self, repository: str, reference: str, body: bytes, content_type: str | None
    ) -> Any:
        self.mirrors.refuse_writes(repository)
        return await ManifestService.put(self, repository, reference, body, content_type)

    async def delete(self, repository: str, reference: str) -> None:
        self.mirrors.refuse_writes(repository)
        await ManifestService.delete(self, repository, reference)

    async def resolve(self, repository: str, reference: str) -> ManifestRecord:
        found = self.mirrors.find(repository)
        if found is None:
            return await ManifestService.resolve(self, repository, reference)
        upstream, remote = found
        try:
            tag, digest = parse_reference(reference)
        except InvalidDigest:
            raise ManifestUnknown(detail={"reference": reference[:200]}) from None
        key = str(digest) if digest is not None else str(tag)
        cached = await self.store.get(repository, key)
        if cached is not None and (digest or time.time() - cached.checked_at < upstream.ttl):
            return _record(cached)
        try:
            if cached is not None:
                head = await upstream.client.head_manifest(remote, key)
                if head is not None and head.digest == cached.digest:
                    await self.store.put(
                        repository, key, cached.digest, cached.media_type, cached.size
                    )
                    return _record(cached)
            fetched = await upstream.client.get_manifest(remote, key)
        except RemoteNotFound:
            raise ManifestUnknown(detail={"reference": reference}) from None
        except RemoteError as e:
            if cached is not None:
                log.info(
                    "upstream %s unreachable, serving cached %s: %s", upstream.client.url, key, e
                )
                # asked again after another ttl, not on every pull while the upstream is down
                m = cached
                await self.store.put(repository, key, m.digest, m.media_type, m.size)
                return _record(cached)
            raise Unavailable(f"upstream {upstream.client.url}: {e}") from None
        actual = Digest.of(fetched.body, digest.algorithm if digest else "sha256")
        if (digest is not None and actual != digest) or (
            fetched.digest and fetched.digest != str(actual)
        ):
            raise Unavailable(f"upstream manifest {key} does not match its digest")
        await self.blobs.put(fetched.body, actual.algorithm)
        size = len(fetched.body)
        await self.store.put(repository, str(actual), str(actual), fetched.media_type, size)
        if tag is not None:
            await self.store.put(repository, tag, str(actual), fetched.media_type, size)
        return ManifestRecord(str(actual), fetched.media_type, size)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        found = self.mirrors.find(repository)
        if found is None:
            return await ManifestService.tags(self, repository, limit, last)
        try:
            names = sorted(await found[0].client.tags(found[1]))
        except RemoteError as e:
            raise Unavailable(f"upstream {found[0].client.url}: {e}") from None
        names = [n for n in names if not last or n > last]
        return names[:limit] if limit is not None else names


class MirroredUploads(_Delegating, UploadService):
    def __init__(self, inner: UploadService, mirrors: Mirrors) -> None:
        self._inner = inner
        self.mirrors = mirrors

    async def start(self, repository: str) -> str:
        self.mirrors.refuse_writes(repository)
        return await UploadService.start(self, repository)

    async def monolithic(self, repository: str, *args: Any, **kw: Any) -> int:
        self.mirrors.refuse_writes(repository)
        return await UploadService.monolithic(self, repository, *args, **kw)


def upstreams(settings: Settings) -> list[Upstream]:
    found: list[Upstream] = []
    for m in settings.mirrors:
        client = RegistryClient(
            m.remoteurl, m.username, m.password, insecure=m.insecure, cacert=m.cacert
        )
        found.append(Upstream(m.prefix.strip("/"), client, parse_duration(m.ttl)))
    proxy = settings.proxy
    if proxy.remoteurl:
        client = RegistryClient(proxy.remoteurl, proxy.username, proxy.password)
        found.append(Upstream("", client, parse_duration(proxy.ttl)))
    return found


def install_mirrors(services: Services, stack: AsyncExitStack) -> Services:
    """The services, wrapped by the mirror when ``mirrors`` or ``proxy`` are configured."""
    ups = upstreams(services.settings)
    if not ups:
        return services
    mirrors = Mirrors(ups)
    stack.push_async_callback(mirrors.close)
    return dataclasses.replace(
        services,
        blobs=MirroredBlobs(services.blobs, mirrors, services.uploads.uploads),
        manifests=MirroredManifests(services.manifests, mirrors, MirrorStore(services.meta.db)),
        uploads=MirroredUploads(services.uploads, mirrors),
    )
