"""Events in the reference registry's JSON shape, built from changes and pulls."""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.config import Settings
from registry.events.store import NewEvent
from registry.meta.changes import Change
from registry.request_context import RequestInfo

BLOB_MEDIA_TYPE = "application/octet-stream"  # what the reference says of a blob


def rfc3339(moment: datetime) -> str:
    """``2026-11-27T08:00:00.123456Z``, as Go's time.Time marshals (to the microsecond)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Source:
    """The ``source`` of every event this process writes."""

    addr: str
    instance_id: str

    @classmethod
    def of(cls, settings: Settings) -> Source:
        _, port = settings.http.bind
        return cls(f"{socket.gethostname()}:{port}", str(uuid.uuid4()))


class EventBuilder:
    """Turns a change or a pull into an event body (JSON text) for the outbox."""

    def __init__(self, settings: Settings, source: Source) -> None:
        self.base = settings.http.host.rstrip("/")
        self.scheme = "https" if settings.http.tls.certificate else "http"
        self.references = settings.notifications.events.includereferences
        self.source = source

    def _url(self, request: RequestInfo | None, repository: str, kind: str, digest: str) -> str:
        base = self.base or (f"{self.scheme}://{request.host}" if request and request.host else "")
        if not base or not digest:
            return ""
        section = "blobs" if kind == "blob" else "manifests"
        return f"{base}/v2/{repository}/{section}/{digest}"

    def _event(
        self,
        action: str,
        target: dict[str, object],
        request: RequestInfo | None,
        when: datetime | None = None,
    ) -> tuple[str, datetime, dict[str, object]]:
        event_id, now = str(uuid.uuid4()), when or datetime.now(UTC)
        event: dict[str, object] = {
            "id": event_id,
            "timestamp": rfc3339(now),
            "action": action,
            "target": {k: v for k, v in target.items() if v not in (None, "", 0, [])},
            "request": {
                k: v
                for k, v in {
                    "id": request.id if request else "",
                    "addr": request.addr if request else "",
                    "host": request.host if request else "",
                    "method": request.method if request else "",
                    "useragent": request.useragent if request else "",
                }.items()
                if v
            },
            "actor": {"name": request.actor} if request and request.actor else {},
            "source": {"addr": self.source.addr, "instanceID": self.source.instance_id},
        }
        return event_id, now, event

    def _new(
        self,
        action: str,
        repository: str,
        target: dict[str, object],
        request: RequestInfo | None,
        endpoints: tuple[str, ...],
        when: datetime | None = None,
    ) -> NewEvent:
        event_id, now, event = self._event(action, target, request, when)
        body = json.dumps(event, separators=(",", ":"))
        return NewEvent(event_id, now, action, repository, body, endpoints)

    def target_of(self, change: Change) -> dict[str, object]:
        """The ``target`` of a change, with the fields the reference fills for it."""
        if change.action == "delete":
            if change.kind == "tag":
                return {"repository": change.repository, "tag": change.tag}
            return {"digest": change.digest, "repository": change.repository}
        kind = change.kind
        media_type = change.media_type or (BLOB_MEDIA_TYPE if kind == "blob" else "")
        target: dict[str, object] = {
            "mediaType": media_type,
            "size": change.size,
            "digest": change.digest,
            "length": change.size,
            "repository": change.repository,
            "fromRepository": change.from_repository,
            "url": self._url(change.request, change.repository, kind, change.digest),
            "tag": change.tag,
        }
        if self.references and change.manifest is not None:
            target["references"] = [
                {"mediaType": m, "size": s, "digest": d} for m, d, s in change.manifest.references
            ]
        return target

    def media_type_of(self, change: Change) -> str:
        if change.action == "delete":
            return ""  # the reference's delete events carry no media type
        return change.media_type or (BLOB_MEDIA_TYPE if change.kind == "blob" else "")

    def from_change(self, change: Change, endpoints: tuple[str, ...]) -> NewEvent:
        return self._new(
            change.action, change.repository, self.target_of(change), change.request, endpoints
        )

    def custom(
        self,
        action: str,
        repository: str,
        target: dict[str, object],
        request: RequestInfo | None,
        endpoints: tuple[str, ...],
    ) -> NewEvent:
        """An event of another feature (``quota_warning``...), in the same envelope."""
        return self._new(action, repository, target, request, endpoints)

    def pull(
        self,
        kind: str,
        repository: str,
        digest: str,
        media_type: str,
        size: int,
        tag: str | None,
        request: RequestInfo | None,
        endpoints: tuple[str, ...],
        references: list[dict[str, object]] | None = None,
        when: datetime | None = None,
    ) -> NewEvent:
        target: dict[str, object] = {
            "mediaType": media_type or BLOB_MEDIA_TYPE,
            "size": size,
            "digest": digest,
            "length": size,
            "repository": repository,
            "url": self._url(request, repository, kind, digest),
            "tag": tag,
            "references": references,
        }
        return self._new("pull", repository, target, request, endpoints, when)
