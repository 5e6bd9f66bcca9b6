"""The pull-through mirror's blob fetches from upstream, each holding its lease.

A blob not here is fetched from upstream once per registry, however many clients,
worker processes and nodes (sharing the database and storage) pull it at once: the
request that takes the fetch's lease (a ``mirror_fetches`` row per upstream and digest,
expiring after ``fetchlease`` unless renewed while the fetch runs) fetches it into an
upload, streaming the bytes to its client as they arrive, then verifies, commits and
links it like a push. The fetcher writes the upload in segments and notes, in memory and
in the lease row, how many bytes are readable, for the requests following it
(:class:`~replicator.mirror_blobs.MirroredBlobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from registry.errors import Unavailable
from replicator.mirror_store import FetchLeases
from replicator.mirror_upstreams import Upstream
from replicator.streams import ChunkReader
from storage.digest import Digest
from storage.uploads import UploadNotFound, UploadStore

log = logging.getLogger("wharf.mirror")
QUEUE_CHUNKS = 64  # chunks buffered for the client a fetch streams to
WAIT = 1.0  # a follower in the fetching process looks again after this, news or not
REPORT_EVERY = 0.2  # the fetcher notes its progress in the database at most this often
FIRST_SEGMENT = 256 * 1024  # bytes of the first segment followers may read ...
MAX_SEGMENT = 8 * 1024 * 1024  # ... doubling up to this


@dataclass
class Origin:
    upstream: Upstream
    remote: str  # repository name at the upstream
    repository: str  # here
    size: int


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass
class Fetch:
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


class UpstreamFetches:
    """The blob fetches this process runs (``running``, by digest) and where each blob a
    request asked for is to be fetched from (``origins``). ``stored`` tells whether a
    blob is in the blob store, ``link`` links a fetched blob into its repository."""

    def __init__(
        self,
        uploads: UploadStore,
        leases: FetchLeases,
        followable: bool,
        stored: Callable[[Digest], Awaitable[bool]],
        link: Callable[[str, str, int], Awaitable[None]],
    ) -> None:
        self.upload_store = uploads
        self.leases = leases
        self.followable = followable
        self._stored = stored
        self._link = link
        self.origins: dict[str, Origin] = {}
        self.running: dict[str, Fetch] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = 0  # fetches from upstream started

    def knows(self, key: str) -> bool:
        """Whether blob ``key`` is to be fetched, or being fetched, by this process."""
        return key in self.origins or key in self.running

    @staticmethod
    async def follow(fetch: Fetch) -> AsyncIterator[bytes]:
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

    async def lead(
        self, key: str, origin: Origin, tee: bool, dead: str | None = None
    ) -> Fetch | None:
        """Take the fetch's lease and start it; None if another process took it first
        (or the blob got stored meanwhile). The lease is taken in a task of its own: a
        client going away meanwhile leaves no lease behind. ``dead``: the upload of the
        expired fetch taken over, deleted once the lease is ours."""
        if key in self.running:
            return None  # another request of this process got there first: follow it
        fetch = Fetch()
        if tee:
            fetch.queue = asyncio.Queue(QUEUE_CHUNKS)
            fetch.subscribed = True
        self.running[key] = fetch  # requests of this process follow it from now on
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

    async def _take(self, key: str, origin: Origin, fetch: Fetch, dead: str | None) -> Fetch | None:
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

    def _finish(self, key: str, fetch: Fetch) -> None:
        if self.running.get(key) is fetch:
            del self.running[key]
        fetch.done = True
        fetch.bump()

    async def _fetch(self, key: str, origin: Origin, fetch: Fetch) -> None:
        url = origin.upstream.client.url
        reporter = asyncio.create_task(self._report(url, key, fetch, origin.upstream.lease))
        end: bytes | BaseException | None = None
        try:
            self.started += 1
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
            if self.origins.get(key) is origin:
                del self.origins[key]
            self._finish(key, fetch)
            while fetch.subscribed and fetch.queue is not None:  # the end, behind the bytes
                try:
                    fetch.queue.put_nowait(end)
                    break
                except asyncio.QueueFull:
                    await asyncio.sleep(0.05)

    async def _report(self, url: str, key: str, fetch: Fetch, ttl: float) -> None:
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
    async def _tee(source: AsyncIterator[bytes], fetch: Fetch) -> AsyncIterator[bytes]:
        async for chunk in source:
            if fetch.subscribed and fetch.queue is not None:
                await fetch.queue.put(chunk)
            yield chunk

    async def _download(self, key: str, origin: Origin, fetch: Fetch) -> int:
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
