"""A storage driver on an S3-compatible object store, with boto3.

boto3 blocks, so every call runs in one bounded thread pool owned by the driver; the
event loop only awaits futures. Paths map to keys under ``rootdirectory``.

The boto3 client and the calls on single objects are in :mod:`storage.s3_client` (the
only module importing boto3); files being written (multipart uploads, appends across
nodes, copies) in :mod:`storage.s3_multipart`. See docs/storage.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.driver import FileInfo, FileWriter, PathNotFound
from storage.s3_client import make_client
from storage.s3_multipart import MAX_COPY, MIN_PART, SIDECAR, STATE, S3Multipart

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class S3Options:
    """What the driver needs to know (``storage.s3`` in the configuration)."""

    bucket: str
    region: str = "us-east-1"
    regionendpoint: str = ""
    accesskey: str = ""
    secretkey: str = ""
    rootdirectory: str = ""
    chunksize: int = 10 * 1024 * 1024
    secure: bool = True
    v4auth: bool = True
    forcepathstyle: bool = False
    redirect: bool = False
    redirect_expiry: float = 1200.0
    threads: int = 16
    # objects above this are copied with UploadPartCopy in parts of copy_part_size
    multipart_copy_threshold: int = MAX_COPY
    copy_part_size: int = 1024 * 1024 * 1024


class S3Driver(S3Multipart):
    """Paths as keys in one bucket, under an optional root prefix."""

    name = "s3"

    def __init__(self, options: S3Options) -> None:
        if options.chunksize < MIN_PART:
            raise ValueError(f"storage.s3.chunksize must be at least {MIN_PART}")
        self.options = options
        self.bucket = options.bucket
        self.root = options.rootdirectory.strip("/")
        self.chunksize = options.chunksize
        self._pool = ThreadPoolExecutor(options.threads, thread_name_prefix="wharf-s3")
        # UploadPart calls of writers: a pool of their own, so a writer waiting for its
        # parts (in a thread of the first pool) never waits for a thread of the same pool
        self._parts = ThreadPoolExecutor(options.threads, thread_name_prefix="wharf-s3-part")
        self._client: S3Client = make_client(options)

    def close(self) -> None:
        """Stop the thread pools (calls in flight finish)."""
        self._pool.shutdown(wait=False)
        self._parts.shutdown(wait=False)

    # -- the StorageDriver interface ----------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self.key(path)
        data = await self._call(self._get, key)
        if data is not None:
            return data
        if await self._call(self._load_state, key) is None:
            raise PathNotFound(path)
        return b"".join([chunk async for chunk in self.reader(path)])

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        await self._call(self._client.put_object, Bucket=self.bucket, Key=self.key(path), Body=data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self.key(path)
        try:
            async for chunk in self._read_object(key, offset, length):
                yield chunk
            return
        except PathNotFound:
            pass
        state = await self._call(self._load_state, key)
        if state is None:
            raise PathNotFound(path)
        state = await self._call(self._consolidate, key, state)
        end = state.size if length is None else min(state.size, offset + length)
        pos = 0
        for seg, seg_size in ((state.base, state.base_size), (state.tail, state.tail_size)):
            if seg is not None and seg_size and offset < pos + seg_size and pos < end:
                start = max(offset - pos, 0)
                async for chunk in self._read_object(seg, start, min(end - pos, seg_size) - start):
                    yield chunk
            pos += seg_size

    async def _read_object(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        """A ranged GET, streamed in chunks of :data:`READ_CHUNK`."""
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length is not None and length <= 0:
            if await self._call(self._head, key) is None:
                raise PathNotFound(self._rel(key))
            return
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            kw["Range"] = f"bytes={offset}-{last}"
        body = await self._call(self._open_get, kw)
        if body is None:
            return
        try:
            while True:
                chunk = await self._call(body.read, READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self.key(path)
        return await self._call(self._open_writer, key, append)

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        head = await self._call(self._head, key)
        if head is not None:
            return FileInfo(path, head[0], False, head[1])
        # a file being written (uploads: the common case after a HEAD miss), else a directory
        state = await self._call(self._load_state, key)
        if state is not None:
            return FileInfo(path, state.size, False, state.modified)
        r = await self._call(
            self._client.list_objects_v2, Bucket=self.bucket, Prefix=key + "/", MaxKeys=1
        )
        if r.get("KeyCount", 0):
            return FileInfo(path, 0, True, 0.0)
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        prefix = self.key(path) + "/"
        pages = await self._call(self._list_pages, prefix, "/")
        children: set[str] = set()
        while (page := await self._call(next, pages, None)) is not None:
            for cp in page.get("CommonPrefixes", []):
                children.add(f"{path}/{cp['Prefix'][len(prefix) :].rstrip('/')}")
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name.endswith(STATE):
                    name = name[: -len(STATE)]
                elif SIDECAR.search(name):
                    continue
                children.add(f"{path}/{name}")
        if not children:
            raise PathNotFound(path)
        return sorted(children)

    async def move(self, source: str, dest: str) -> None:
        src, dst = self.key(source), self.key(dest)
        head = await self._call(self._head, src)
        if head is None:
            raise PathNotFound(source)
        await self._call(self._copy, src, dst, head[0])
        await self._call(self._delete_keys, [src])

    async def delete(self, path: str) -> None:
        key = self.key(path)
        found = 0
        for prefix in (key + "/", key + ".s3w-"):
            pages = await self._call(self._list_pages, prefix)
            while (page := await self._call(next, pages, None)) is not None:
                keys = [o["Key"] for o in page.get("Contents", [])]
                for k in keys:
                    if k.endswith(STATE):
                        state = await self._call(self._load_state, k[: -len(STATE)])
                        if state is not None and state.upload_id is not None:
                            await self._call(self._abort, k[: -len(STATE)], state.upload_id)
                found += len(keys)
                if keys:
                    await self._call(self._delete_keys, keys)
        if await self._call(self._head, key) is not None:
            found += 1
            await self._call(self._delete_keys, [key])
        if not found:
            raise PathNotFound(path)

    async def delete_many(self, paths: Sequence[str]) -> Sequence[str]:
        keys = [self.key(p) for p in paths]
        failed = await self._call(self._delete_keys, keys)
        return [self._rel(k) for k in failed]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        prefix = self.key(path) + "/"
        pages = await self._call(self._list_pages, prefix)
        while (page := await self._call(next, pages, None)) is not None:
            for obj in page.get("Contents", []):
                k = obj["Key"]
                if k.endswith(STATE):
                    state = await self._call(self._load_state, k[: -len(STATE)])
                    if state is not None:
                        yield FileInfo(
                            self._rel(k[: -len(STATE)]), state.size, False, state.modified
                        )
                elif not SIDECAR.search(k):
                    yield FileInfo(
                        self._rel(k), obj["Size"], False, obj["LastModified"].timestamp()
                    )

    async def redirect_url(self, path: str) -> str | None:
        if not self.options.redirect:
            return None
        url: str = await self._call(
            self._client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(path)},
            ExpiresIn=int(self.options.redirect_expiry),
        )
        return url

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        """Abort multipart uploads under ``path`` begun before the epoch time ``older_than``
        (left behind by a crash before their state was saved); return how many."""
        return await self._call(self._abort_stale, self.key(path) + "/", older_than)
