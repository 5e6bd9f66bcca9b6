"""Database leases: who may do a piece of work now, across every process and node.

A lease is a row naming its holder and when it expires; a holder keeps it by renewing it
before then, and gives it up when done. A holder that died or hung loses it when it
expires: another takes it. The same shape is kept in several tables (``gc_lease``,
``event_endpoints``, ``replication_leases``, ``mirror_fetches``), each with its own key
and columns: a :class:`LeaseTable` says which, and the functions here run the same SQL
on any of them, on SQLite and PostgreSQL, without changing a table.

The functions take a synchronous ``Connection`` (they run inside ``Database.run_write``
and may be combined with other statements in one transaction); :class:`Lease` binds a
lease table to a database, one transaction per call.

Taking is race-free without locks: an ``UPDATE`` whose condition says "free, expired or
already mine", then, when no row matched, an ``INSERT ... ON CONFLICT DO NOTHING``. Two
processes racing for a row both run the same conditional update (PostgreSQL re-checks
the condition on the row the other committed) or the same insert (one inserts, the other
does nothing): exactly one holds the lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Column, Connection, DateTime, Table, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from registry.meta.db import Database

Key = Mapping[str, Any]  # the values of the key columns: {"rule": "nightly"}
Values = Mapping[str, Any]  # other columns set with the lease ({"run_id": 7})


@dataclass(frozen=True)
class LeaseTable:
    """Where one kind of lease is kept.

    ``key``: the columns naming one lease (its row); ``holder`` and ``expires``: the
    columns of the holder and the expiry (epoch seconds in a ``Float`` column, or a
    ``DateTime``: the kind is read from the column). ``release``: what giving a lease up
    does: ``"delete"`` the row, or ``"expire"`` it (the expiry set to NULL, or to the
    epoch if the column is not nullable; the holder to NULL if nullable), for rows that
    hold more than the lease. ``creates``: whether taking inserts a missing row (False
    where the rows are made elsewhere and carry other required columns).
    """

    table: Table
    key: tuple[str, ...]
    holder: str = "holder"
    expires: str = "expires_at"
    release: Literal["delete", "expire"] = "delete"
    creates: bool = True

    def __post_init__(self) -> None:
        for name in (*self.key, self.holder, self.expires):
            if name not in self.table.c:
                raise ValueError(f"{self.table.name} has no column {name!r}")

    @property
    def holder_column(self) -> Column[Any]:
        return self.table.c[self.holder]

    @property
    def expires_column(self) -> Column[Any]:
        return self.table.c[self.expires]

    def time(self, epoch: float) -> Any:
        """``epoch`` as the expiry column stores it."""
        if isinstance(self.expires_column.type, DateTime):
            return datetime.fromtimestamp(epoch, UTC)
        return epoch

    def where(self, key: Key) -> ColumnElement[bool]:
        if set(key) != set(self.key):
            raise ValueError(f"a key of {self.table.name} has {', '.join(self.key)}")
        return and_(*(self.table.c[name] == value for name, value in key.items()))


def _free(where: LeaseTable, holder: str, now: Any, reentrant: bool, dead: str | None) -> Any:
    """The condition under which ``holder`` may take a lease row."""
    h, e = where.holder_column, where.expires_column
    free: list[ColumnElement[bool]] = [e <= now]
    if e.nullable:
        free.append(e.is_(None))
    if h.nullable:
        free.append(h.is_(None))
    if reentrant:
        free.append(h == holder)
    if dead is not None:
        free.append(h == dead)
    return or_(*free)


def take(
    conn: Connection,
    where: LeaseTable,
    key: Key,
    holder: str,
    now: float,
    ttl: float,
    values: Values | None = None,
    *,
    reentrant: bool = True,
    dead: str | None = None,
) -> bool:
    """Take the lease ``key`` for ``holder`` until ``now + ttl`` unless another holds it
    unexpired; True if ``holder`` holds it now. ``values``: other columns to set with it.

    ``reentrant``: a holder may take again what it holds (extending it); False where
    each piece of work has its own holder and a live row means "under way" whoever holds
    it. ``dead``: a holder known to have died, whose lease is taken even unexpired."""
    at = where.time(now)
    settings = {where.holder: holder, where.expires: where.time(now + ttl), **(values or {})}
    result = conn.execute(
        update(where.table)
        .where(where.where(key), _free(where, holder, at, reentrant, dead))
        .values(settings)
    )
    if result.rowcount:
        return True
    if not where.creates:
        return False
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = conn.execute(
        dialect.insert(where.table).values({**key, **settings}).on_conflict_do_nothing()
    )
    return bool(inserted.rowcount)


def renew(
    conn: Connection,
    where: LeaseTable,
    key: Key,
    holder: str,
    now: float,
    ttl: float,
    values: Values | None = None,
) -> bool:
    """Extend ``holder``'s lease until ``now + ttl``; False if it is no longer theirs
    (taken by another after it expired, or released)."""
    settings = {where.expires: where.time(now + ttl), **(values or {})}
    result = conn.execute(
        update(where.table).where(where.where(key), where.holder_column == holder).values(settings)
    )
    return bool(result.rowcount)


def release(
    conn: Connection, where: LeaseTable, key: Key, holder: str, values: Values | None = None
) -> None:
    """Give ``holder``'s lease up (nothing if it is not theirs): another need not wait."""
    mine = (where.where(key), where.holder_column == holder)
    if where.release == "delete":
        conn.execute(delete(where.table).where(*mine))
        return
    settings: dict[str, Any] = dict(values or {})
    e = where.expires_column
    settings[where.expires] = None if e.nullable else where.time(0.0)
    if where.holder_column.nullable:
        settings[where.holder] = None
    conn.execute(update(where.table).where(*mine).values(settings))


def holder_of(conn: Connection, where: LeaseTable, key: Key, now: float) -> str | None:
    """Who holds the lease ``key`` unexpired at ``now``; None if nobody."""
    found = conn.execute(
        select(where.holder_column).where(where.where(key), where.expires_column > where.time(now))
    ).scalar()
    return None if found is None else str(found)


class Lease:
    """One kind of lease bound to a database: each method is one write (or read)
    transaction; ``ttl`` is how long a take or renewal lasts, from ``clock()``."""

    def __init__(
        self,
        db: Database,
        where: LeaseTable,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.where = where
        self.ttl = ttl
        self.clock = clock  # epoch seconds: compared across nodes

    async def take(
        self,
        key: Key,
        holder: str,
        values: Values | None = None,
        *,
        reentrant: bool = True,
        dead: str | None = None,
    ) -> bool:
        now = self.clock()

        def _take(conn: Connection) -> bool:
            return take(
                conn, self.where, key, holder, now, self.ttl, values, reentrant=reentrant, dead=dead
            )

        return await self.db.run_write(_take)

    async def renew(self, key: Key, holder: str, values: Values | None = None) -> bool:
        return await self.db.run_write(
            renew, self.where, key, holder, self.clock(), self.ttl, values
        )

    async def release(self, key: Key, holder: str, values: Values | None = None) -> None:
        await self.db.run_write(release, self.where, key, holder, values)

    async def holder(self, key: Key) -> str | None:
        return await self.db.run_read(holder_of, self.where, key, self.clock())
