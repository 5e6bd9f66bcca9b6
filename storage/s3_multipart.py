"""Files being written on S3 (uploads): multipart upload state, appends across nodes, copies.

Appendable files (uploads) are S3 multipart uploads. While a file at ``path`` is being
written, its key does not exist; beside it live small sidecar objects:

- ``<key>.s3w-state``: JSON with the multipart UploadId, the parts so far (number, ETag,
  size), an optional *base* object and the *tail* object (key and size), and the size;
- ``<key>.s3w-tail-<n>``: the bytes after the last full part (less than ``chunksize``),
  kept durable between requests so that the next chunk may land on any node;
- ``<key>.s3w-base-<n>``: the file so far as a plain object, after a reader needed it.

The bytes of a pending multipart upload cannot be read back, so a reader of a file being
written first completes the multipart upload into a base object (the state then has a
base and no UploadId); the next writer that fills a part starts a new multipart upload
whose first parts are server-side copies of the base. Committing completes the multipart
upload into the key itself (the tail, if any, is the last part), so the data never leaves
the object store. See docs/storage.md.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage.driver import StorageUnavailable
from storage.s3_client import S3Calls, translated

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART = 5 * 1024 * 1024
MAX_COPY = 5 * 1024 * 1024 * 1024  # largest CopyObject / UploadPartCopy source range
PARTS_IN_FLIGHT = 4  # UploadPart calls one writer runs at once
STATE = ".s3w-state"
SIDECAR = re.compile(r"\.s3w-(state|tail-\d+|base-\d+)$")


def _ranges(size: int, most: int) -> list[tuple[int, int]]:
    """Split ``size`` bytes into inclusive ranges of ``most`` bytes; a remainder under
    5 MiB joins the range before it (every part but the last of a multipart upload must be
    at least 5 MiB, and copied ranges may be followed by more parts)."""
    out = [[start, min(size, start + most) - 1] for start in range(0, size, most)]
    if len(out) > 1 and out[-1][1] - out[-1][0] + 1 < MIN_PART:
        last = out.pop()
        out[-1][1] = last[1]
    return [(a, b) for a, b in out]


@dataclass
class _Part:
    number: int
    etag: str
    size: int


@dataclass
class _State:
    """The stored state of a file being written (``<key>.s3w-state``)."""

    upload_id: str | None = None
    parts: list[_Part] = field(default_factory=list)
    base: str | None = None
    base_size: int = 0
    tail: str | None = None
    tail_size: int = 0
    generation: int = 0
    modified: float = 0.0

    @property
    def size(self) -> int:
        return self.base_size + sum(p.size for p in self.parts) + self.tail_size

    def dump(self) -> bytes:
        return json.dumps(
            {
                "upload_id": self.upload_id,
                "parts": [[p.number, p.etag, p.size] for p in self.parts],
                "base": self.base,
                "base_size": self.base_size,
                "tail": self.tail,
                "tail_size": self.tail_size,
                "generation": self.generation,
                "size": self.size,
            }
        ).encode()

    @classmethod
    def load(cls, raw: bytes, modified: float) -> _State:
        d = json.loads(raw)
        return cls(
            upload_id=d["upload_id"],
            parts=[_Part(int(n), str(e), int(s)) for n, e, s in d["parts"]],
            base=d["base"],
            base_size=int(d["base_size"]),
            tail=d["tail"],
            tail_size=int(d["tail_size"]),
            generation=int(d["generation"]),
            modified=modified,
        )


class S3Multipart(S3Calls):
    """The driver's part for files being written: their state, consolidation, copies."""

    chunksize: int
    _parts: ThreadPoolExecutor

    def _load_state(self, key: str) -> _State | None:
        got = self._get_object(key + STATE)
        return None if got is None else _State.load(*got)

    def _save_state(self, key: str, state: _State) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key + STATE, Body=state.dump())

    def _copy_parts(
        self, source: str, size: int, dest: str, upload_id: str, first: int
    ) -> list[_Part]:
        parts: list[_Part] = []
        for i, (start, end) in enumerate(_ranges(size, self.options.copy_part_size)):
            r = self._client.upload_part_copy(
                Bucket=self.bucket,
                Key=dest,
                UploadId=upload_id,
                PartNumber=first + i,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append(_Part(first + i, r["CopyPartResult"]["ETag"], end - start + 1))
        return parts

    def _complete(self, key: str, upload_id: str, parts: list[_Part]) -> None:
        done: list[CompletedPartTypeDef] = [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
        self._client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )

    def _copy(self, source: str, dest: str, size: int) -> None:
        """Server-side copy; UploadPartCopy in parts above the multipart threshold."""
        if size <= self.options.multipart_copy_threshold:
            self._client.copy_object(
                Bucket=self.bucket, Key=dest, CopySource={"Bucket": self.bucket, "Key": source}
            )
            return
        upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=dest)["UploadId"]
        try:
            self._complete(dest, upload_id, self._copy_parts(source, size, dest, upload_id, 1))
        except BaseException:
            self._abort(dest, upload_id)
            raise

    def _consolidate(self, key: str, state: _State) -> _State:
        """Make the bytes of a file being written readable: complete its multipart upload
        (into its own key, as S3 requires), copy that to a new base object server-side
        and delete the key again; the tail stays as it is."""
        if state.upload_id is None:
            return state
        old_base = state.base
        if state.parts:
            gen = state.generation + 1
            base, size = f"{key}.s3w-base-{gen}", sum(p.size for p in state.parts)
            self._complete(key, state.upload_id, state.parts)
            self._copy(key, base, size)
            state.generation = gen
            state.base, state.base_size = base, size
        else:
            self._abort(key, state.upload_id)
        state.upload_id, state.parts = None, []
        self._save_state(key, state)
        self._delete_keys([key, *([old_base] if old_base and old_base != state.base else [])])
        return state

    def _open_writer(self, key: str, append: bool) -> S3Writer:
        state = self._load_state(key)
        if not append:
            if state is not None:
                self._drop_state(key, state)
            if self._head(key) is not None:
                self._delete_keys([key])
            return S3Writer(self, key, _State(), bytearray(), dirty=True)
        buffer = bytearray()
        if state is None:
            head = self._head(key)
            state = _State()
            if head is None:
                return S3Writer(self, key, state, buffer, dirty=True)
            # a finished file, appended to: it becomes the base of a file being written
            if head[0] < MIN_PART:
                buffer += self._get(key) or b""
            else:
                state.generation = 1
                state.base, state.base_size = f"{key}.s3w-base-1", head[0]
                self._copy(key, state.base, head[0])
            self._save_tail_and_state(key, state, buffer)
            self._delete_keys([key])
            return S3Writer(self, key, state, buffer, dirty=False)
        if state.tail is not None:
            buffer += self._get(state.tail) or b""
            del buffer[state.tail_size :]
        stale = state.base
        if state.base is not None and state.upload_id is None and state.base_size < MIN_PART:
            # too small to be a copied part: take it into the buffer
            buffer[:0] = self._get(state.base) or b""
            state.base, state.base_size = None, 0
        return S3Writer(self, key, state, buffer, dirty=False, stale=(stale,))

    def _save_tail_and_state(self, key: str, state: _State, buffer: bytearray) -> None:
        """Persist the tail (a new object, so the old state stays valid until replaced),
        then the state; then delete the old tail."""
        old_tail = state.tail
        if buffer:
            state.generation += 1
            state.tail, state.tail_size = f"{key}.s3w-tail-{state.generation}", len(buffer)
            self._client.put_object(Bucket=self.bucket, Key=state.tail, Body=bytes(buffer))
        else:
            state.tail, state.tail_size = None, 0
        self._save_state(key, state)
        if old_tail and old_tail != state.tail:
            self._delete_keys([old_tail])

    def _drop_state(self, key: str, state: _State) -> None:
        if state.upload_id is not None:
            self._abort(key, state.upload_id)
        self._delete_keys([k for k in (state.base, state.tail, key + STATE) if k])

    def _abort_stale(self, prefix: str, older_than: float) -> int:
        paginator = self._client.get_paginator("list_multipart_uploads")
        aborted = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for up in page.get("Uploads", []):
                if up["Initiated"].timestamp() < older_than:
                    self._abort(up["Key"], up["UploadId"])
                    aborted += 1
        return aborted


class S3Writer:
    """A :class:`FileWriter` on a multipart upload: bytes are gathered into parts of
    ``chunksize``; what is left at :meth:`close` is stored as the tail object."""

    def __init__(
        self,
        driver: S3Multipart,
        key: str,
        state: _State,
        buffer: bytearray,
        dirty: bool,
        stale: tuple[str | None, ...] = (),
    ) -> None:
        self._d = driver
        self._key = key
        self._state = state
        self._buf = buffer
        self._dirty = dirty
        self._closed = False
        # parts being uploaded, oldest first: (number, size, future of the UploadPart answer)
        self._inflight: deque[tuple[int, int, Future[Any]]] = deque()
        self._failed = False
        # objects of the stored state this writer may replace: deleted once they are not
        # named by the state it saves
        self._stale = {k for k in (*stale, state.base, state.tail) if k}

    @property
    def size(self) -> int:
        s = self._state
        return s.base_size + sum(p.size for p in s.parts) + len(self._buf)

    def _start_upload(self) -> None:
        d, s = self._d, self._state
        s.upload_id = d._client.create_multipart_upload(Bucket=d.bucket, Key=self._key)["UploadId"]
        if s.base is not None:
            s.parts = d._copy_parts(s.base, s.base_size, self._key, s.upload_id, 1)
            s.base, s.base_size = None, 0  # the old base object goes when the state is saved
        self._dirty = True

    def _upload_part(self, data: bytes) -> None:
        """Start sending a part; at most :data:`PARTS_IN_FLIGHT` go at once per writer."""
        d, s = self._d, self._state
        assert s.upload_id is not None
        number = (s.parts[-1].number if s.parts else 0) + len(self._inflight) + 1
        future = d._parts.submit(
            d._client.upload_part,
            Bucket=d.bucket,
            Key=self._key,
            UploadId=s.upload_id,
            PartNumber=number,
            Body=data,
        )
        self._inflight.append((number, len(data), future))
        self._drain(PARTS_IN_FLIGHT - 1)

    def _drain(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` parts are in flight, recording the finished ones.
        If a part failed, the parts after it are waited for and forgotten (the state
        saved last still describes what is stored) and the error is raised."""
        while len(self._inflight) > keep:
            number, size, future = self._inflight.popleft()
            try:
                etag = future.result()["ETag"]
            except BaseException:
                for _, _, later in self._inflight:
                    with contextlib.suppress(BaseException):
                        later.result()
                self._inflight.clear()
                self._failed = True
                raise
            self._state.parts.append(_Part(number, etag, size))

    def write_blocking(self, parts: list[bytes]) -> None:
        assert not self._closed, "writer is closed"
        for p in parts:
            self._buf += p
        self._dirty = True
        size = self._d.chunksize
        with translated():
            while len(self._buf) >= size:
                if self._state.upload_id is None:
                    self._start_upload()
                self._upload_part(bytes(self._buf[:size]))
                del self._buf[:size]

    async def write(self, data: bytes) -> None:
        if len(self._buf) + len(data) < self._d.chunksize:
            self._buf += data
            self._dirty = True
        else:
            await self._d._call(self.write_blocking, [data])

    def _save(self) -> None:
        self._drain()
        if self._failed:
            return  # bytes of a lost part: keep the state saved before this writer
        s = self._state
        self._d._save_tail_and_state(self._key, s, self._buf)
        doomed = self._stale - {s.base, s.tail}
        if doomed:
            self._d._delete_keys(sorted(doomed))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._dirty:
            await self._d._call(self._save)

    def _finish(self) -> None:
        d, s, key = self._d, self._state, self._key
        self._drain()
        if self._failed:
            raise StorageUnavailable("a part of the upload was lost")
        if s.upload_id is not None and not s.parts and s.base is None:
            d._abort(key, s.upload_id)
            s.upload_id = None
        if s.upload_id is None and s.base is not None and s.base_size and self._buf:
            self._start_upload()  # base + tail: copy the base as parts, tail as the last
        if s.upload_id is not None:
            if self._buf:
                self._upload_part(bytes(self._buf))
                self._drain()
            d._complete(key, s.upload_id, s.parts)
        elif s.base is not None:
            d._copy(s.base, key, s.base_size)
        else:
            d._client.put_object(Bucket=d.bucket, Key=key, Body=bytes(self._buf))
        self._buf = bytearray()
        doomed = {key + STATE, *self._stale, *(k for k in (s.base, s.tail) if k)}
        d._delete_keys(sorted(doomed))

    async def commit(self) -> None:
        assert not self._closed, "writer is closed"
        self._closed = True
        await self._d._call(self._finish)

    def _cancel(self) -> None:
        d = self._d
        with contextlib.suppress(Exception):
            self._drain()
        d._drop_state(self._key, self._state)
        d._delete_keys([self._key, *self._stale])

    async def cancel(self) -> None:
        self._closed = True
        await self._d._call(self._cancel)
