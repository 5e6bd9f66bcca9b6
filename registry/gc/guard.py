"""The push side of online garbage collection: pins taken by uploads, mounts, blob HEAD/GET
and manifest pushes, so that a running GC never deletes what a push relies on.

The services call :class:`PushGuard` (their :class:`registry.service.pins.Pins`, given at
construction); the metadata store calls :func:`registry.gc.store_pins.guard_change`
inside every link and manifest transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from registry.errors import StorageFull, Unavailable
from registry.gc import store_pins
from registry.meta.db import Database
from registry.service.pins import DigestBusy

# A blob HEAD/GET writes its pin at most this often (else it only reads): a GC grace
# period must be longer for a HEAD to keep a blob for the manifest that follows it.
TOUCH_REFRESH = 10.0
# How long a push waits for a GC that is deleting the very digest it pushes.
BUSY_WAIT = 30.0
T = TypeVar("T")


class PushGuard:
    """Pins digests for push-side operations (the services' ``Pins``)."""

    def __init__(self, db: Database, refresh: float = TOUCH_REFRESH) -> None:
        self.db = db
        self.refresh = refresh

    async def pin(self, digests: Sequence[str]) -> None:
        """Pin ``digests`` before their bytes are put in place or relied on; wait (up to
        ``BUSY_WAIT``) while a GC is deleting one of them, then answer 503."""
        await self.while_busy(lambda: self.db.run_write(store_pins.pin, list(digests), time.time()))

    @staticmethod
    async def while_busy(write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write`` (a push-side transaction) again while it finds a GC deleting a
        digest it relies on, up to ``BUSY_WAIT``; then :class:`Unavailable` (503)."""
        deadline = time.monotonic() + BUSY_WAIT
        delay = 0.05
        while True:
            try:
                return await write()
            except DigestBusy as e:
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{e.digest} is being garbage collected; push it again shortly"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def touch(self, repository: str, digest: str) -> int | None:
        """The size of a blob linked to ``repository`` (None if not), pinned for a client
        that may reference it next instead of uploading it."""
        found = await self.db.run_read(store_pins.size_and_seen, repository, digest)
        if found is None:
            return None
        size, seen_at = found
        now = time.time()
        if seen_at >= now - self.refresh:
            return size
        try:
            return await self.db.run_write(store_pins.touch, repository, digest, now)
        except Exception as e:
            if StorageFull.of(e) is None:
                raise
            return size  # no room to refresh the pin: the read still answers

    @staticmethod
    async def put_back(put: Callable[[], Awaitable[object]]) -> None:
        """A manifest push committed: its bytes, found stored before, may have been an
        identical orphan a GC deleted meanwhile; ``put`` stores them again."""
        await put()
