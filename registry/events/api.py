"""``/api/events``: endpoint status, the event log from a cursor, dead events (admin only).

- ``GET  /api/events?after=SEQ&limit=N``          events still in the outbox, oldest first
- ``GET  /api/events/endpoints``                  each endpoint's queue and health
- ``GET  /api/events/dead?endpoint=&after=&limit=`` events parked as dead
- ``POST /api/events/dead/requeue?endpoint=&seq=`` make dead events pending again
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.config import NotificationsSettings
from registry.errors import InvalidParameter
from registry.events import store as outbox
from registry.meta.db import Database

PREFIX = "/api/events"
MAX_LIMIT = 1000


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _int(request: Request, key: str, default: int, high: int | None = None) -> int:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"{key} must be an integer", detail={key: raw[:50]}) from None
    if value < 0:
        raise InvalidParameter(f"{key} must not be negative", detail={key: value})
    return min(value, high) if high is not None else value


async def endpoint_report(db: Database, settings: NotificationsSettings) -> list[dict[str, Any]]:
    """Each configured endpoint's queue and health (``GET /api/events/endpoints``,
    ``wharf events status``)."""
    out: list[dict[str, Any]] = []
    for endpoint in settings.endpoints:
        stats, state = await db.run_read(outbox.endpoint_status, endpoint.name)
        now = datetime.now(UTC)
        oldest = stats["oldest_pending"]
        paused = state.paused_until if state else None
        out.append(
            {
                "name": endpoint.name,
                "url": endpoint.url,
                "disabled": endpoint.disabled,
                "format": endpoint.format,
                "pending": stats["pending"],
                "dead": stats["dead"],
                "delivered": state.delivered if state else 0,
                "failures": state.failures if state else 0,
                "last_success": _iso(state.last_success if state else None),
                "last_error": state.last_error if state else None,
                "last_error_at": _iso(state.last_error_at if state else None),
                "paused_until": _iso(paused) if paused and paused > now else None,
                "lag_seconds": (now - oldest).total_seconds() if oldest else 0.0,
                "sender": state.lease_owner
                if state and state.lease_until and state.lease_until > now
                else None,
            }
        )
    return out


async def dead_report(
    db: Database, name: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """Dead events after ``seq`` ``after``, oldest first (``GET /api/events/dead``,
    ``wharf events dead``)."""
    rows = await db.run_read(outbox.dead_events, name, after, limit)
    return [
        {
            "endpoint": r["endpoint"],
            "seq": r["seq"],
            "attempts": r["attempts"],
            "failed_at": _iso(r["failed_at"]),
            "error": r["error"],
            "event": json.loads(r["body"]),
        }
        for r in rows
    ]


class EventsAPI:
    """The ASGI app mounted at ``/api/events``."""

    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings
        self.router = Router(
            routes=[
                Route(PREFIX, self.events, methods=["GET"]),
                Route(f"{PREFIX}/endpoints", self.endpoints, methods=["GET"]),
                Route(f"{PREFIX}/dead", self.dead, methods=["GET"]),
                Route(f"{PREFIX}/dead/requeue", self.requeue, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "events-api"
        require_admin(scope)
        await self.router(scope, receive, send)

    def _endpoint(self, request: Request) -> str | None:
        name = request.query_params.get("endpoint") or None
        known = {e.name for e in self.settings.endpoints}
        if name is not None and name not in known:
            raise InvalidParameter(f"no endpoint named {name!r}", detail={"endpoint": name[:100]})
        return name

    async def events(self, request: Request) -> Response:
        after = _int(request, "after", 0)
        limit = _int(request, "limit", 100, MAX_LIMIT)
        rows = await self.db.run_read(outbox.list_events, after, limit)
        events = [{"seq": seq, "event": json.loads(body)} for seq, body in rows]
        return JSONResponse({"events": events, "next": rows[-1][0] if rows else after})

    async def endpoints(self, request: Request) -> Response:
        return JSONResponse({"endpoints": await endpoint_report(self.db, self.settings)})

    async def dead(self, request: Request) -> Response:
        name = self._endpoint(request)
        after = _int(request, "after", 0)
        limit = _int(request, "limit", 100, MAX_LIMIT)
        dead = await dead_report(self.db, name, after, limit)
        return JSONResponse({"dead": dead, "next": dead[-1]["seq"] if dead else after})

    async def requeue(self, request: Request) -> Response:
        name = self._endpoint(request)
        raw = request.query_params.getlist("seq")
        try:
            seqs = [int(s) for s in raw] if raw else None
        except ValueError:
            raise InvalidParameter("seq must be an integer") from None
        count = await self.db.run_write(outbox.requeue_dead, name, seqs)
        return JSONResponse({"requeued": count})
