"""The pull-through mirror: repositories under a prefix (or the whole registry, with
``proxy.remoteurl``) mirror an upstream registry.

Installed by :func:`install_mirrors` in place of the plain services when mirrors are
configured. A manifest not here is fetched on first pull, its bytes stored
content-addressed and noted (tag or digest -> digest) in ``mirror_manifests``; a tag is
checked again with a HEAD once older than the mirror's ``ttl``, and the cached one is
served when the upstream cannot be reached.

A blob not here is fetched from upstream once per registry, however many clients,
worker processes and nodes (sharing the database and storage) pull it at once: the
request that takes the fetch's lease (a ``mirror_fetches`` row per upstream and digest,
expiring after ``fetchlease`` unless renewed while the fetch runs) fetches it into an
upload, streaming the bytes to its client as they arrive, then verifies, commits and
links it like a push. Every other request follows that fetch: on a filesystem it reads
the upload as it grows (the fetcher writes it in segments and notes, in memory and in
the lease row, how many bytes are readable), elsewhere (S3) it waits for the commit;
once the blob is stored it reads the blob. A fetcher that died leaves a lease that
expires; the next follower to see that takes the fetch over (from byte zero, into a new
upload; the dead one's is deleted) and its client goes on from where it was. Pushes and
deletes under a mirrored prefix are refused with ``DENIED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from registry.api.context import Services
from registry.config import Settings
from registry.content.names import parse_reference
from registry.durations import parse_duration
from registry.errors import BlobUnknown, Denied, ManifestUnknown, Unavailable
from registry.meta.mirror import FetchLeases, MirroredManifest, MirrorStore
from registry.meta.records import ManifestRecord
from registry.service.blobs import BlobService
from registry.service.manifests import ManifestService
from registry.service.uploads import UploadService
from replicator.client import RegistryClient
from replicator.errors import RemoteError, RemoteNotFound
from replicator.streams import ChunkReader
from storage.blobs import BlobNotFound
from storage.digest import Digest, InvalidDigest
from storage.driver import PathNotFound
from storage.layout import upload_data_path
from storage.uploads import UploadNotFound, UploadStore

log = logging.getLogger("wharf.mirror")
QUEUE_CHUNKS = 64  # chunks buffered for the client a fetch streams to
POLL = 0.2  # seconds between looks at a fetch run by another process
WAIT = 1.0  # a follower in the fetching process looks again after this, news or not
REPORT_EVERY = 0.2  # the fetcher notes its progress in the database at most this often
FIRST_SEGMENT = 256 * 1024  # bytes of the first segment followers may read ...
MAX_SEGMENT = 8 * 1024 * 1024  # ... doubling up to this


@dataclass
class Upstream:
    prefix: str  # "" mirrors the whole registry
    client: RegistryClient
    ttl: float
    lease: float = 30.0  # a blob fetch's lease (``fetchlease``)


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


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass
class _Fetch:
    """A blob this process fetches from upstream, holding its lease (``mirror_fetches``)."""

    holder: str = field(default_factory=_holder)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) on news
    upload_id: str | None = None
    written: int = 0  # bytes of the upload readable by followers (closed segments)
    done: bool = False
    error: BaseException | None = None
    # the client that started the fetch gets the bytes as they arrive (bounded queue)
    queue: asyncio.Queue[bytes | BaseException | None] | None = None
    subscribed: bool = False

    def bump(self) -> None:
        """Wake whoever waits for news of this fetch."""
        self.changed.set()
        self.changed = asyncio.Event()


class _Delegating:
    """Attributes not set on the wrapper are the wrapped service's (state set later on
    the wrapper, such as another feature's guard, stays on the wrapper)."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


class MirroredBlobs(_Delegating, BlobService):
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
        self._origins: dict[str, _Origin] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
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

    async def redirect_url(self, digest: Digest) -> str | None:
        key = str(digest)
        if (key in self._origins or key in self._fetches) and not await self._stored(digest):
            return None  # not stored yet: served by this process as it arrives
        return await BlobService.redirect_url(self, digest)

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        key = str(digest)
        if key not in self._origins and key not in self._fetches:
            return BlobService.stream(self, digest, offset, length)
        return self._mirrored(digest, offset, length)

    async def _mirrored(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes of a blob that may not be stored yet: from storage once it is; else
        fetched by this request (the lease taken), or following the fetch of another
        request, process or node (its upload read as it grows); taken over if that fetch
        died (its lease expired)."""
        key = str(digest)
        origin = self._origins.get(key)
        pos, end = offset, offset + length
        seen: _Fetch | None = None  # the last fetch of this process looked at
        while pos < end:
            fetch = self._fetches.get(key)
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
                    seen = await self._lead(key, origin, tee, dead)
                    if seen is not None and seen.queue is not None:
                        async for chunk in self._follow(seen):
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
        try:
            await self.blobs.stat(digest)
            return True
        except BlobNotFound:
            return False

    async def _link(self, repository: str, key: str, size: int) -> None:
        if await self.meta.blob_size(repository, key) is None:
            await self.meta.link_blob(repository, key, size)

    @staticmethod
    async def _follow(fetch: _Fetch) -> AsyncIterator[bytes]:
        """The bytes of a fetch as they arrive (for the client that started it)."""
        assert fetch.queue is not None
        try:
            while True:
                try:
                    item = await asyncio.wait_for(fetch.queue.get(), WAIT)
                except TimeoutError:
                    if not (fetch.done and fetch.queue.empty()):
                        continue
                    # ended, and every chunk it queued was taken: end as the fetch did
                    item = fetch.error
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise Unavailable(f"fetching from upstream failed: {item}")
                yield item
        finally:
            fetch.subscribed = False  # a client gone: the fetch goes on without it
            while not fetch.queue.empty():
                fetch.queue.get_nowait()

    async def _lead(
        self, key: str, origin: _Origin, tee: bool, dead: str | None = None
    ) -> _Fetch | None:
        """Take the fetch's lease and start it; None if another process took it first
        (or the blob got stored meanwhile). The lease is taken in a task of its own: a
        client going away meanwhile leaves no lease behind. ``dead``: the upload of the
        expired fetch taken over, deleted once the lease is ours."""
        if key in self._fetches:
            return None  # another request of this process got there first: follow it
        fetch = _Fetch()
        if tee:
            fetch.queue = asyncio.Queue(QUEUE_CHUNKS)
            fetch.subscribed = True
        self._fetches[key] = fetch  # requests of this process follow it from now on
        task = asyncio.create_task(self._take(key, origin, fetch, dead), name=f"mirror-{key[:19]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            fetch.subscribed = False  # the client is gone: the fetch goes on without it
            while fetch.queue is not None and not fetch.queue.empty():
                fetch.queue.get_nowait()
            raise

    async def _take(
        self, key: str, origin: _Origin, fetch: _Fetch, dead: str | None
    ) -> _Fetch | None:
        url = origin.upstream.client.url
        try:
            won = await self.leases.take(url, key, fetch.holder, origin.upstream.lease, origin.size)
            if won and dead is not None:  # what the dead fetcher left
                with contextlib.suppress(UploadNotFound):
                    await self.upload_store.cancel(dead)
            if won and await self._stored(Digest.parse(key)):
                await self.leases.end(url, key, fetch.holder)
                won = False
        except BaseException as e:
            fetch.error = e
            self._finish(key, fetch)
            raise
        if not won:
            self._finish(key, fetch)
            return None
        task = asyncio.create_task(self._fetch(key, origin, fetch), name=f"mirror-{key[:19]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch

    def _finish(self, key: str, fetch: _Fetch) -> None:
        if self._fetches.get(key) is fetch:
            del self._fetches[key]
        fetch.done = True
        fetch.bump()

    async def _fetch(self, key: str, origin: _Origin, fetch: _Fetch) -> None:
        url = origin.upstream.client.url
        reporter = asyncio.create_task(self._report(url, key, fetch, origin.upstream.lease))
        end: bytes | BaseException | None = None
        try:
            self.upstream_fetches += 1
            started = time.monotonic()
            size = await self._download(key, origin, fetch)
            await self._link(origin.repository, key, size)
            log.info(
                "mirrored %s from %s (%d bytes, %.1f s)",
                key,
                url,
                size,
                time.monotonic() - started,
            )
        except Exception as e:
            log.warning("mirror fetch of %s failed: %s", key, e)
            fetch.error = end = e
        except asyncio.CancelledError:
            fetch.error = end = Unavailable("the registry is shutting down")
            raise
        finally:
            reporter.cancel()
            try:
                await self.leases.end(url, key, fetch.holder)  # stored and linked first
            except Exception as e:
                log.warning("mirror fetch of %s: lease not released (it expires): %s", key, e)
            if self._origins.get(key) is origin:
                del self._origins[key]
            self._finish(key, fetch)
            while fetch.subscribed and fetch.queue is not None:  # the end, behind the bytes
                try:
                    fetch.queue.put_nowait(end)
                    break
                except asyncio.QueueFull:
                    await asyncio.sleep(0.05)

    async def _report(self, url: str, key: str, fetch: _Fetch, ttl: float) -> None:
        """Renew the lease while the fetch runs, noting its upload and progress for
        followers in other processes (at most every ``REPORT_EVERY`` seconds)."""
        reported: tuple[str | None, int] = (None, 0)
        renewed = time.monotonic()
        while True:
            news = fetch.changed
            now = time.monotonic()
            if (fetch.upload_id, fetch.written) != reported or now - renewed >= ttl / 3:
                reported = (fetch.upload_id, fetch.written)
                try:
                    ours = await self.leases.renew(url, key, fetch.holder, ttl, *reported)
                    renewed = now
                    if not ours:
                        log.warning("mirror fetch of %s: lease taken over by another", key)
                except Exception as e:
                    log.warning("mirror fetch of %s: lease not renewed: %s", key, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), ttl / 3)
            await asyncio.sleep(REPORT_EVERY)

    @staticmethod
    async def _tee(source: AsyncIterator[bytes], fetch: _Fetch) -> AsyncIterator[bytes]:
        async for chunk in source:
            if fetch.subscribed and fetch.queue is not None:
                await fetch.queue.put(chunk)
            yield chunk

    async def _download(self, key: str, origin: _Origin, fetch: _Fetch) -> int:
        """Fetch into an upload, in segments each closed before followers are told of it
        (readable by any process then), doubling up to ``MAX_SEGMENT``; verify, commit."""
        upload_id = await self.upload_store.create(origin.repository)
        fetch.upload_id = upload_id
        fetch.bump()
        try:
            async with origin.upstream.client.blob_stream(origin.remote, key) as response:
                source = self._tee(response.aiter_raw(), fetch)
                if not self.followable:
                    await self.upload_store.append(upload_id, source)
                else:
                    reader = ChunkReader(source)
                    segment = FIRST_SEGMENT
                    while fetch.written < origin.size:
                        n = await self.upload_store.append(
                            upload_id, reader.take(segment), fetch.written
                        )
                        if n == fetch.written:
                            break  # ended early: the commit says so
                        fetch.written = n
                        fetch.bump()
                        segment = min(segment * 2, MAX_SEGMENT)
            return await self.upload_store.commit(upload_id, Digest.parse(key), origin.size)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.upload_store.cancel(upload_id)
            raise

    async def close(self) -> None:
        """Stop the fetches under way, letting go of their leases (others take over)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        lease = parse_duration(m.fetchlease)
        found.append(Upstream(m.prefix.strip("/"), client, parse_duration(m.ttl), lease))
    proxy = settings.proxy
    if proxy.remoteurl:
        client = RegistryClient(proxy.remoteurl, proxy.username, proxy.password)
        lease = parse_duration(proxy.fetchlease)
        found.append(Upstream("", client, parse_duration(proxy.ttl), lease))
    return found


def install_mirrors(services: Services, stack: AsyncExitStack) -> Services:
    """The services, wrapped by the mirror when ``mirrors`` or ``proxy`` are configured."""
    ups = upstreams(services.settings)
    if not ups:
        return services
    mirrors = Mirrors(ups)
    stack.push_async_callback(mirrors.close)
    blobs = MirroredBlobs(
        services.blobs, mirrors, services.uploads.uploads, FetchLeases(services.meta.db)
    )
    stack.push_async_callback(blobs.close)  # before the upstream clients close
    return dataclasses.replace(
        services,
        blobs=blobs,
        manifests=MirroredManifests(services.manifests, mirrors, MirrorStore(services.meta.db)),
        uploads=MirroredUploads(services.uploads, mirrors),
    )
