"""``/api/audit``: the audit log, newest first (by time), in cursor pages; ``/api/audit/export``.

- ``GET /api/audit?project=&user=&action=&repository=&outcome=&since=&until=&cursor=&limit=``
  -> ``{"records": [...], "next": CURSOR or null}``; pass ``cursor=NEXT`` for the next
  (older) page.
- ``GET /api/audit/export?format=jsonl|csv&...`` (the same filters): every matching
  record, streamed, as JSON Lines or CSV (``details`` as JSON in its column).

Access: system administrators see every record; a project's owners see that project's
records (with no ``project`` filter: those of every project they own); anyone else gets
403 ``DENIED`` (401 anonymous). Bad parameters: 400 ``AUDIT_QUERY_INVALID`` naming each.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.http import json_response
from registry.audit import store
from registry.audit.query import Query, format_cursor, format_time, parse_query
from registry.audit.records import COLUMNS, to_json
from registry.errors import Denied, NotFound, Unsupported
from registry.meta.db import Database

PREFIX = "/api/audit"
EXPORT_PAGE = 1000

# (request scope) -> the projects whose records the caller sees (None: all); raises
# Unauthorized or Denied for a caller who sees none
Access = Callable[[Scope], Awaitable[frozenset[str] | None]]


async def admins_only(scope: Scope) -> frozenset[str] | None:
    """Without projects' roles: system administrators only."""
    require_admin(scope)
    return None


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A record as the API gives it: ``time`` in RFC 3339, ``epoch`` in seconds."""
    out = to_json(row)
    out["epoch"] = out["time"]
    out["time"] = format_time(float(out["time"]))
    return out


def csv_line(record: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        json.dumps(record[c], separators=(",", ":"))
        if c == "details"
        else ("" if record[c] is None else record[c])
        for c in COLUMNS
    )
    return out.getvalue()


class AuditAPI:
    """The ASGI app mounted at :data:`PREFIX`."""

    def __init__(self, db: Database, access: Access = admins_only) -> None:
        self.db = db
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "audit"
        path = scope["path"].rstrip("/")
        if path not in (PREFIX, PREFIX + "/export"):
            raise NotFound(detail={"path": scope["path"][:300]})
        if scope["method"] not in ("GET", "HEAD"):
            raise Unsupported("use GET", headers={"Allow": "GET"})
        request = Request(scope, receive)
        export = path.endswith("/export")
        query = parse_query(request.query_params, export=export)
        query = await self._visible(scope, query)
        if export:
            response: Any = self._export(query)
        else:
            rows = await self.db.run_read(store.page, query.filters, query.cursor, query.limit)
            more = len(rows) == query.limit
            next_cursor = format_cursor(rows[-1]) if rows and more else None
            response = json_response(
                {"records": [shown(r) for r in rows], "next": next_cursor},
                headers={"Cache-Control": "no-store"},
            )
        await response(scope, receive, send)

    async def _visible(self, scope: Scope, query: Query) -> Query:
        """The query narrowed to what the caller may see."""
        projects = await self.access(scope)
        if projects is None:
            return query
        wanted = query.filters.project
        if wanted is not None and wanted not in projects:
            raise Denied(f"not an owner of project {wanted}: its audit records are not shown")
        return replace(query, filters=replace(query.filters, projects=projects))

    def _export(self, query: Query) -> StreamingResponse:
        csv_format = query.format == "csv"

        async def lines() -> AsyncIterator[bytes]:
            if csv_format:
                yield (",".join(COLUMNS) + "\n").encode()
            cursor = query.cursor
            while True:
                rows = await self.db.run_read(store.page, query.filters, cursor, EXPORT_PAGE)
                out = []
                for row in rows:
                    record = shown(row)
                    out.append(csv_line(record) if csv_format else json.dumps(record) + "\n")
                if out:
                    yield "".join(out).encode()
                if len(rows) < EXPORT_PAGE:
                    return
                cursor = (float(rows[-1]["time"]), int(rows[-1]["id"]))

        kind, ext = (
            ("text/csv; charset=utf-8", "csv") if csv_format else ("application/jsonl", "jsonl")
        )
        headers = {
            "Content-Disposition": f'attachment; filename="audit.{ext}"',
            "Cache-Control": "no-store",
        }
        return StreamingResponse(lines(), media_type=kind, headers=headers)
