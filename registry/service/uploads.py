"""Blob uploads: start, append chunks, finish with a digest, cancel."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass

from registry.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    StorageFull,
    TooManyRequests,
    Unavailable,
)
from registry.meta.store import MetadataStore
from registry.meta.uploads import NO_EXPIRY, Caps, Full, UploadSessions
from registry.service.pins import DigestBusy, NoPins, Pins
from storage.digest import Digest
from storage.uploads import (
    UploadDigestMismatch,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadStore,
)

# The 429 of a capped POST asks the client to wait this long (seconds): open sessions end
# as their pushes finish, which takes seconds to minutes.
RETRY_AFTER = 10
# Before refusing, this many of the oldest sessions counted against the full cap are
# looked up in storage: a session purged or dropped there gives its slot back at once.
# One found there is not looked up again for RECHECK_EVERY seconds (a client hammering
# at its cap costs a database read, not storage reads, per refused POST).
RECHECK = 16
RECHECK_EVERY = 30.0
# A session's row is written before its files: one younger than this is never taken
# for gone from storage (its files may still be being made).
SETTLE = 30.0
_SEEN_MAX = 4096


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """``storage.maintenance.uploadlimits``, and the age after which the upload purge
    takes a session (None: never, as when the purge is off or a dry run)."""

    per_repository: int = 0  # 0: no cap
    per_caller: int = 0
    expire_after: float | None = None

    @property
    def caps(self) -> Caps:
        return Caps(self.per_repository, self.per_caller)


class UploadService:
    """Upload sessions bound to a repository; a blob is linked only once verified."""

    def __init__(
        self,
        meta: MetadataStore,
        uploads: UploadStore,
        clock: Callable[[], float] = time.time,
        pins: Pins | None = None,
    ) -> None:
        self.meta = meta
        self.uploads = uploads
        self.pins: Pins = pins if pins is not None else NoPins(meta)  # online GC (#7)
        self.sessions = UploadSessions(meta.db)
        self.clock = clock  # epoch seconds: when a session starts, and expires
        self._seen: dict[str, float] = {}  # session id: when last found in storage

    async def start(self, repository: str, upload_id: str | None = None) -> str:
        """Open an upload session (with ``upload_id`` if given) and return its id (not
        counted against any cap)."""
        return await self.uploads.create(repository, upload_id)

    async def open(self, repository: str, caller: str, limits: UploadLimits) -> str:
        """Open an upload session for ``caller`` (``user:NAME`` or ``addr:ADDRESS``) and
        return its id; past a cap of ``limits``, :class:`TooManyRequests` (429) and
        nothing is created, neither a row nor a file.

        The session's row is counted and inserted in one transaction before storage is
        touched; should storage then fail (or a pull-through mirror refuse the write),
        the row is deleted again."""
        caps = limits.caps
        if not caps.any:
            return await self.start(repository)
        caller = caller[:255]
        upload_id = self.uploads.new_id()
        found = await self._record(upload_id, repository, caller, limits)
        if found is not None:
            raise _too_many(found, repository)
        try:
            return await self.start(repository, upload_id)  # a mirror may refuse here
        except BaseException:
            await self.sessions.forget(upload_id)
            raise

    async def _record(
        self, upload_id: str, repository: str, caller: str, limits: UploadLimits
    ) -> Full | None:
        """Record the session, or the cap it would go over: that after giving back the
        slots of counted sessions that are gone from storage (purged, or whose end was
        not recorded), at most once per cap."""
        for _ in range(3):
            now = self.clock()
            found = await self.sessions.open(
                upload_id,
                repository,
                caller,
                limits.caps,
                now,
                _live_after(limits, now),
                RECHECK,
                SETTLE,
            )
            if found is None:
                return None
            gone = [i for i in found.oldest if not await self._exists(i)]
            if not gone:
                return found
            await self.sessions.forget(*gone)
        return found

    async def _exists(self, upload_id: str) -> bool:
        now = self.clock()
        seen = self._seen.get(upload_id)
        if seen is not None and now - seen < RECHECK_EVERY:
            return True
        try:
            await self.uploads.info(upload_id)
        except UploadNotFound:
            self._seen.pop(upload_id, None)
            return False
        except (ValueError, KeyError):
            pass  # unreadable info: the purge judges it by its age
        if len(self._seen) >= _SEEN_MAX:  # forget the oldest half
            ordered = sorted(self._seen.items(), key=lambda item: item[1])
            self._seen = dict(ordered[len(ordered) // 2 :])
        self._seen[upload_id] = now
        return True

    async def _discard(self, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            await self.uploads.cancel(upload_id)

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

    async def finish(
        self, repository: str, upload_id: str, digest: Digest, *, counted: bool = True
    ) -> int:
        """Verify the upload against ``digest``, store the blob and link it; return its
        size. The session is over then, as when the digest does not match (its bytes
        are dropped): a ``counted`` one gives its slot back."""
        await self._check(repository, upload_id)
        try:  # before the bytes take their place (docs/gc.md)
            await self.pins.pin([str(digest)])
        except Exception as e:
            if StorageFull.of(e) is not None:  # a 507 cancels the upload (its bytes freed)
                with contextlib.suppress(UploadNotFound):
                    await self.uploads.cancel(upload_id)
                # its slot: no metadata write on a full disk; a full cap finds the
                # session gone from storage and frees it
            raise
        try:
            size = await self.uploads.commit(upload_id, digest)
        except UploadNotFound:
            await self._over(upload_id, counted)
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        except UploadDigestMismatch as e:
            await self._over(upload_id, counted)
            raise DigestInvalid(
                detail={"expected": str(e.expected), "actual": str(e.actual)}
            ) from None
        except ValueError as e:
            await self._over(upload_id, counted)
            raise SizeInvalid(str(e)) from None
        try:  # the session's slot is given back in the same transaction
            await self.meta.link_blob(
                repository,
                str(digest),
                size,
                ended_upload=upload_id if counted else None,
                fresh=True,  # its verified bytes replaced any bad ones (a quarantine)
            )
        except DigestBusy:  # stalled longer than the GC grace period: its bytes may be gone
            await self._over(upload_id, counted)
            raise Unavailable("the blob was garbage collected meanwhile; upload it again") from None
        except BaseException:
            await self._over(upload_id, counted)
            raise
        return size

    async def cancel(self, repository: str, upload_id: str) -> None:
        """Abort an upload and delete what it received."""
        await self._check(repository, upload_id)
        try:
            await self.uploads.cancel(upload_id)
        except UploadNotFound:
            await self._over(upload_id, True)
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        await self._over(upload_id, True)

    async def _over(self, upload_id: str, counted: bool) -> None:
        """The session ended: its slot is free."""
        if counted:
            await self.sessions.forget(upload_id)

    async def monolithic(
        self, repository: str, body: AsyncIterable[bytes], digest: Digest, length: int | None
    ) -> int:
        """Receive a whole blob in one request, verify it and link it."""
        upload_id = await self.uploads.create(repository)
        try:
            size = await self.uploads.append(upload_id, body)
            if length is not None and size != length:
                raise SizeInvalid(f"received {size} bytes, Content-Length said {length}")
            return await self.finish(repository, upload_id, digest, counted=False)
        except BaseException:
            with contextlib.suppress(UploadNotFound):
                await self.uploads.cancel(upload_id)
            raise


def _live_after(limits: UploadLimits, now: float) -> float:
    return NO_EXPIRY if limits.expire_after is None else now - limits.expire_after


def _too_many(found: Full, repository: str) -> TooManyRequests:
    whose = f"repository {repository}" if found.scope == "repository" else "this caller"
    return TooManyRequests(
        f"too many open upload sessions for {whose} (at most {found.limit}): "
        "finish or cancel one, then try again",
        detail={"scope": found.scope, "limit": found.limit},
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def _range_headers(size: int) -> dict[str, str]:
    return {"Range": f"0-{max(size - 1, 0)}"}


def upload_range(size: int) -> str:
    """The ``Range`` header value describing an upload of ``size`` bytes."""
    return _range_headers(size)["Range"]
