"""Open upload sessions (issue #13): one row per session a POST opened, counted for the
caps on open sessions per repository and per caller.

Opening a session is one write transaction: count the repository's and the caller's
sessions, insert the new one if both are under their caps. SQLite runs one writer at a
time (``BEGIN IMMEDIATE``, across processes too); on PostgreSQL the transaction first
takes an advisory lock on the repository, then one on the caller (always in that order,
so two openers never deadlock), and concurrent openings of one repository or one caller
count one after the other. A cap therefore holds across workers and nodes.

A session older than the upload purge's age belongs to the purge: it is not counted
(``live_after``), and the next opening deletes its row.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, func, insert, select, text

from registry.meta import direct
from registry.meta.db import Database
from registry.meta.tables import upload_sessions

NO_EXPIRY = 0.0  # ``live_after`` when sessions never expire (no upload purge)
# advisory lock namespaces (the two-int form, apart from the GC's one-bigint keys)
_LOCK_REPOSITORY = 0x75706C72  # "uplr"
_LOCK_CALLER = 0x75706C63  # "uplc"
Scope = Literal["repository", "caller"]
_t = upload_sessions.c


@dataclass(frozen=True, slots=True)
class Caps:
    """Sessions open at once, at most: in one repository, for one caller (0: no cap)."""

    repository: int
    caller: int

    @property
    def any(self) -> bool:
        return self.repository > 0 or self.caller > 0


@dataclass(frozen=True, slots=True)
class Full:
    """A cap that one more session would go over, and the oldest sessions it counts."""

    scope: Scope
    limit: int
    oldest: tuple[str, ...] = ()


def lock_key(name: str) -> int:
    """A signed 32-bit advisory lock key for a repository or caller name."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


@cache
def _count(scope: Scope) -> Any:
    """Parameters: ``name``, ``after``."""
    return (
        select(func.count())
        .select_from(upload_sessions)
        .where(_t[scope] == bindparam("name"), _t.started_at >= bindparam("after"))
    )


@cache
def _oldest(scope: Scope) -> Any:
    """Parameters: ``name``, ``after``, ``settled``, ``limit``."""
    return (
        select(_t.id)
        .where(
            _t[scope] == bindparam("name"),
            _t.started_at >= bindparam("after"),
            _t.started_at < bindparam("settled"),
        )
        .order_by(_t.started_at)
        .limit(bindparam("limit"))
    )


@cache
def _insert() -> Any:
    return insert(upload_sessions).values(
        id=bindparam("id"),
        repository=bindparam("repository"),
        caller=bindparam("caller"),
        started_at=bindparam("started_at"),
    )


@cache
def _delete_one() -> Any:
    return delete(upload_sessions).where(_t.id == bindparam("id"))


@cache
def _delete_expired() -> Any:
    return delete(upload_sessions).where(_t.started_at < bindparam("before"))


def full(
    conn: Connection,
    repository: str,
    caller: str,
    caps: Caps,
    live_after: float,
    oldest: int = 0,
    settled_before: float = float("inf"),
) -> Full | None:
    """The first cap (the caller's, then the repository's) one more session would go
    over, with up to ``oldest`` of the sessions it counts that started before
    ``settled_before``, oldest first; None if none."""
    checks: tuple[tuple[Scope, int, str], ...] = (
        ("caller", caps.caller, caller),
        ("repository", caps.repository, repository),
    )
    for scope, limit, name in checks:
        if limit <= 0:
            continue
        params: dict[str, Any] = {"name": name, "after": live_after}
        if int(direct.scalar(conn, _count(scope), params) or 0) < limit:
            continue
        ids: tuple[str, ...] = ()
        if oldest > 0:
            more = {"limit": oldest, "settled": settled_before}
            rows = direct.rows(conn, _oldest(scope), {**params, **more})
            ids = tuple(str(row[0]) for row in rows)
        return Full(scope, limit, ids)
    return None


def _lock(conn: Connection, repository: str, caller: str, caps: Caps) -> None:
    if conn.dialect.name != "postgresql":
        return  # SQLite: this transaction is the only writer
    lock = text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), CAST(:key AS integer))")
    if caps.repository > 0:
        conn.execute(lock, {"ns": _LOCK_REPOSITORY, "key": lock_key(repository)})
    if caps.caller > 0:
        conn.execute(lock, {"ns": _LOCK_CALLER, "key": lock_key(caller)})


def open_session(
    conn: Connection,
    upload_id: str,
    repository: str,
    caller: str,
    caps: Caps,
    now: float,
    live_after: float,
    oldest: int = 0,
    settle: float = 0.0,
) -> Full | None:
    """Record the session ``upload_id`` unless a cap is reached (then the cap, with up
    to ``oldest`` of the sessions it counts older than ``settle`` seconds, and no row)."""
    _lock(conn, repository, caller, caps)
    if live_after > NO_EXPIRY:
        direct.execute(conn, _delete_expired(), {"before": live_after})
    found = full(conn, repository, caller, caps, live_after, oldest, now - settle)
    if found is not None:
        return found
    row = {"id": upload_id, "repository": repository, "caller": caller, "started_at": now}
    direct.execute(conn, _insert(), row)
    return None


def forget(conn: Connection, upload_ids: list[str]) -> int:
    """Delete the rows of sessions that are over; how many there were."""
    return sum(direct.execute(conn, _delete_one(), {"id": i}) for i in upload_ids)


class UploadSessions:
    """The open upload sessions in the database, each call one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(
        self,
        upload_id: str,
        repository: str,
        caller: str,
        caps: Caps,
        now: float,
        live_after: float,
        oldest: int = 0,
        settle: float = 0.0,
    ) -> Full | None:
        """Count and record ``upload_id`` in one transaction: None once recorded, else
        the cap it would go over, with up to ``oldest`` of its sessions older than
        ``settle`` seconds (nothing recorded)."""
        return await self.db.run_write(
            open_session, upload_id, repository, caller, caps, now, live_after, oldest, settle
        )

    async def forget(self, *upload_ids: str) -> None:
        """The sessions are over (finished, cancelled, gone from storage)."""
        if upload_ids:
            await self.db.run_write(forget, list(upload_ids))
