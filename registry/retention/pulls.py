"""Last-pull times, recorded without slowing pulls: :class:`PullTracker` keeps the latest
pull of each manifest and tag in memory (``pulled`` never blocks, raises or touches the
database) and writes them every ``interval`` seconds in one transaction, raising the
stored times (``max``), as the events feature writes pull events
(``registry/events/outbox_hook.py``). A pull by tag records the tag and its manifest, by
digest the manifest. Pulls still in memory when the process is killed are lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from registry.meta.db import Database
from registry.retention import store

log = logging.getLogger("wharf.retention")


class PullTracker:
    def __init__(self, db: Database, interval: float = 0.5, limit: int = 100_000) -> None:
        self.db = db
        self.interval = interval
        self.limit = limit  # distinct keys kept between writes; more are dropped
        self.manifests: dict[tuple[str, str], datetime] = {}
        self.tags: dict[tuple[str, str], datetime] = {}
        self.dropped = 0

    def pulled(
        self,
        kind: str,
        repository: str,
        digest: str,
        media_type: str,
        size: int,
        tag: str | None,
        content: bytes | None,
    ) -> None:
        """A pull listener (``Services.pull_listeners``): only manifest GETs count."""
        if kind != "manifest":
            return
        try:
            if len(self.manifests) + len(self.tags) >= self.limit:
                self.dropped += 1
                return
            now = datetime.now(UTC)
            self.manifests[(repository, digest)] = now
            if tag is not None:
                self.tags[(repository, tag)] = now
        except Exception:  # never fail a pull
            log.exception("recording a pull time")

    async def flush(self) -> None:
        seen_m, self.manifests = self.manifests, {}
        seen_t, self.tags = self.tags, {}
        if not seen_m and not seen_t:
            return
        try:
            await self.db.run_write(store.record_pulls, seen_m, seen_t)
        except Exception as e:
            log.warning("writing %d pull times failed (dropped): %s", len(seen_m) + len(seen_t), e)

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await asyncio.sleep(self.interval)
            await self.flush()
