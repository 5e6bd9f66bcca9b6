"""SQL of the audit log: writing records (in the change's transaction, or in batches),
reading pages newest first, and purging old records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, delete, insert, or_, select

from registry.audit.records import COLUMNS, Row
from registry.audit.tables import audit_records
from registry.meta import direct

PURGE_BATCH = 5000
HALF_MICROSECOND = 5e-7

_WRITTEN = tuple(c for c in COLUMNS if c != "id")


@cache
def _insert() -> Any:
    return insert(audit_records).values({c: bindparam(c) for c in _WRITTEN})


def _params(row: Row) -> dict[str, Any]:
    params = {c: row.get(c) for c in _WRITTEN}
    params["details"] = json.dumps(row.get("details") or {}, separators=(",", ":"), default=str)
    return params


def write(conn: Connection, row: Row) -> None:
    """One record, on the caller's connection (the change's own transaction)."""
    direct.execute(conn, _insert(), _params(row))


def write_many(conn: Connection, rows: Sequence[Row]) -> None:
    """Records in one statement (a batch of logins, grants and pulls)."""
    direct.execute_many(conn, _insert(), [_params(r) for r in rows])


@dataclass(frozen=True, slots=True)
class Filters:
    """What ``/api/audit`` and the export select; ``projects``: the caller's visible
    projects (None: every record, for system administrators)."""

    project: str | None = None
    user: str | None = None
    action: str | None = None
    repository: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    projects: frozenset[str] | None = None

    def where(self) -> list[ColumnElement[bool]]:
        c = audit_records.c
        found: list[ColumnElement[bool]] = []
        if self.project is not None:
            found.append(c.project == self.project)
        if self.projects is not None:
            found.append(c.project.in_(sorted(self.projects)))
        if self.user is not None:
            found.append(c.actor == self.user)
        if self.action is not None:
            if self.action.endswith(".*"):  # a family: "tag.*", "project.*"
                found.append(c.action.startswith(self.action[:-1], autoescape=True))
            else:
                found.append(c.action == self.action)
        if self.repository is not None:
            found.append(c.repository == self.repository)
        if self.outcome is not None:
            found.append(c.outcome == self.outcome)
        # times are shown to the microsecond (rounded): a record shown at the ``since``
        # given is in, one shown at ``until`` is out
        if self.since is not None:
            found.append(c.time >= self.since - HALF_MICROSECOND)
        if self.until is not None:
            found.append(c.time < self.until - HALF_MICROSECOND)
        return found


Cursor = tuple[float, int]  # (time, id) of the last record of the previous page


def page(conn: Connection, filters: Filters, before: Cursor | None, limit: int) -> list[Row]:
    """Up to ``limit`` records matching ``filters``, newest first (by time, then id),
    after ``before`` in that order (the cursor: the last record of the previous page)."""
    c = audit_records.c
    where = filters.where()
    if before is not None:
        when, last = before
        where.append(or_(c.time < when, and_(c.time == when, c.id < last)))
    query = select(audit_records).where(*where).order_by(c.time.desc(), c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def purge(conn: Connection, older_than: float) -> int:
    """Delete up to :data:`PURGE_BATCH` records older than ``older_than`` (epoch); the
    number deleted (the caller repeats while it is a full batch)."""
    ids = (
        select(audit_records.c.id)
        .where(audit_records.c.time < older_than)
        .order_by(audit_records.c.id)
        .limit(PURGE_BATCH)
    )
    found = [int(i) for i in conn.execute(ids).scalars()]
    if not found:
        return 0
    conn.execute(delete(audit_records).where(audit_records.c.id.in_(found)))
    return len(found)
