"""The change hook that writes each push, mount and delete to the outbox, and the pull
buffer that writes pull events in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Connection

from registry.config import NotificationEndpointSettings
from registry.content.manifests import parse_manifest
from registry.events.build import BLOB_MEDIA_TYPE, EventBuilder
from registry.events.metrics import EventMetrics
from registry.events.store import NewEvent, insert_events
from registry.meta.changes import Change
from registry.meta.db import Database, after_commit
from registry.request_context import RequestInfo, current_request

log = logging.getLogger("wharf.events")


def targets(
    endpoints: list[NotificationEndpointSettings], action: str, media_type: str
) -> tuple[str, ...]:
    """The endpoints an event goes to (its ignore filters applied)."""
    return tuple(e.name for e in endpoints if not e.ignores(action, media_type))


class OutboxHook:
    """A :class:`~registry.meta.changes.ChangeHook`: one outbox row per change, with a
    delivery row per endpoint, in the change's transaction. Safe to run again when the
    transaction is retried (the earlier attempt's rows were rolled back with it)."""

    def __init__(
        self,
        builder: EventBuilder,
        endpoints: list[NotificationEndpointSettings],
        metrics: EventMetrics,
        wake: Callable[[], None],
    ) -> None:
        self.builder = builder
        self.endpoints = endpoints
        self.metrics = metrics
        self.wake = wake

    def __call__(self, conn: Connection, change: Change) -> None:
        changes = [change]
        untagged = change.details.get("untagged")
        if change.action == "delete" and change.kind == "manifest" and untagged:
            # as the reference does: a manifest delete also reports each tag it removed
            assert isinstance(untagged, list)
            changes += [
                replace(change, kind="tag", tag=str(tag), digest="", media_type="", size=0)
                for tag in untagged
            ]
        events = []
        for each in changes:
            names = targets(self.endpoints, each.action, self.builder.media_type_of(each))
            events.append(self.builder.from_change(each, names))
        insert_events(conn, events)
        after_commit(conn, lambda: self._queued(events))

    def record(
        self,
        conn: Connection,
        action: str,
        repository: str,
        target: dict[str, object],
        request: RequestInfo | None,
    ) -> None:
        """Write an event of another feature (the quota's ``quota_warning`` and
        ``quota_exceed``) in the caller's transaction, to the endpoints that do not
        ignore ``action``."""
        names = targets(self.endpoints, action, "")
        if not names:
            return
        events = [self.builder.custom(action, repository, target, request, names)]
        insert_events(conn, events)
        after_commit(conn, lambda: self._queued(events))

    def _queued(self, events: list[NewEvent]) -> None:
        """Count the events of a committed transaction (a rolled back one's never were)
        and wake the senders."""
        for event in events:
            for name in event.endpoints:
                self.metrics.queued.labels(name).inc()
        self.wake()


@dataclass(frozen=True, slots=True)
class Pull:
    """A GET as the handler saw it; made into an event when the buffer is written."""

    kind: str
    repository: str
    digest: str
    media_type: str
    size: int
    tag: str | None
    content: bytes | None
    request: RequestInfo | None
    endpoints: tuple[str, ...]
    when: datetime


class PullRecorder:
    """Buffers pull events in memory and writes them in batches.

    ``pulled`` never blocks, never raises and never touches the database: a pull is not
    slowed. Events still in the buffer when the process is killed are lost (pushes and
    deletes are not: they are written with the change).
    """

    def __init__(
        self,
        db: Database,
        builder: EventBuilder,
        endpoints: list[NotificationEndpointSettings],
        metrics: EventMetrics,
        wake: Callable[[], None],
        interval: float = 0.5,
        limit: int = 10_000,
    ) -> None:
        self.db = db
        self.builder = builder
        self.endpoints = endpoints
        self.metrics = metrics
        self.wake = wake
        self.interval = interval
        self.limit = limit
        self.buffer: list[Pull] = []
        self.dropped = 0
        self._ready = asyncio.Event()

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
        """Record a manifest or blob GET (called by the handlers)."""
        try:
            names = targets(self.endpoints, "pull", media_type or BLOB_MEDIA_TYPE)
            if not names:
                return
            if len(self.buffer) >= self.limit:
                self.dropped += 1
                return
            if not self.builder.references:
                content = None
            request, now = current_request.get(), datetime.now(UTC)
            self.buffer.append(
                Pull(kind, repository, digest, media_type, size, tag, content, request, names, now)
            )
            if len(self.buffer) >= 500:
                self._ready.set()
        except Exception:  # never fail a pull
            log.exception("recording a pull event")

    def _event(self, pull: Pull) -> NewEvent:
        references: list[dict[str, object]] | None = None
        if pull.content is not None:
            try:
                parsed = parse_manifest(pull.content, pull.media_type)
                references = [
                    {"mediaType": d.media_type, "size": d.size, "digest": str(d.digest)}
                    for d in [*parsed.blobs, *parsed.manifests]
                ]
            except Exception:  # stored manifests parse; never fail an event on it
                references = None
        return self.builder.pull(
            pull.kind,
            pull.repository,
            pull.digest,
            pull.media_type,
            pull.size,
            pull.tag,
            pull.request,
            pull.endpoints,
            references,
            pull.when,
        )

    async def flush(self) -> None:
        pulls, self.buffer = self.buffer, []
        if not pulls:
            return
        batch = [self._event(p) for p in pulls]
        try:
            await self.db.run_write(insert_events, batch)
        except Exception as e:
            log.warning("writing %d pull events failed (dropped): %s", len(batch), e)
            return
        for event in batch:
            for name in event.endpoints:
                self.metrics.queued.labels(name).inc()
        self.wake()

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.interval)
            self._ready.clear()
            await self.flush()
