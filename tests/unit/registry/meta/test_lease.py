"""Database leases (registry/meta/lease.py) on the four lease tables as they are, on
SQLite and PostgreSQL: take, renew, release, expiry, races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from registry.events.tables import event_endpoints
from registry.gc.tables import gc_lease
from registry.meta.db import Database
from registry.meta.lease import Lease, LeaseTable, holder_of, release, renew, take
from replicator.tables import mirror_fetches, replication_leases
from tests.support.clock import T0, Clock

GC = LeaseTable(gc_lease, ("name",), release="expire")
EVENTS = LeaseTable(
    event_endpoints,
    ("name",),
    holder="lease_owner",
    expires="lease_until",
    release="expire",
    creates=False,  # an endpoint's row is made with its counters
)
REPLICATION = LeaseTable(replication_leases, ("rule",))
MIRROR = LeaseTable(mirror_fetches, ("upstream", "digest"))
MIRROR_VALUES = {"upload_id": None, "written": 0, "size": 10, "started_at": 0.0}


def _endpoint(conn: Connection, name: str) -> None:
    conn.execute(insert(event_endpoints).values(name=name, failures=0, delivered=0))


def _row(conn: Connection, where: LeaseTable, key: dict[str, Any]) -> dict[str, Any] | None:
    row = conn.execute(select(where.table).where(where.where(key))).mappings().first()
    return dict(row) if row is not None else None


@pytest.mark.parametrize(
    ("where", "key", "values"),
    [
        (GC, {"name": "gc"}, {"run_id": None}),
        (EVENTS, {"name": "hook"}, None),
        (REPLICATION, {"rule": "nightly"}, None),
        (MIRROR, {"upstream": "https://up", "digest": "sha256:" + "a" * 64}, MIRROR_VALUES),
    ],
    ids=["gc", "events", "replication", "mirror"],
)
async def test_take_renew_release_expire(
    db: Database, where: LeaseTable, key: dict[str, Any], values: dict[str, Any] | None
) -> None:
    if where is EVENTS:
        await db.run_write(_endpoint, "hook")
    clock = Clock()
    lease = Lease(db, where, ttl=30.0, clock=clock)
    assert await lease.holder(key) is None
    assert await lease.take(key, "a", values)
    assert await lease.holder(key) == "a"
    assert not await lease.take(key, "b", values)  # held
    assert await lease.take(key, "a", values)  # a holder takes again what it holds
    clock.now += 20
    assert await lease.renew(key, "a")
    assert not await lease.renew(key, "b")  # not b's
    clock.now += 20  # 40 s after the take, 20 after the renewal: still a's
    assert not await lease.take(key, "b", values)
    clock.now += 11  # expired: a died or hung
    assert await lease.holder(key) is None
    assert await lease.take(key, "b", values)
    assert not await lease.renew(key, "a")  # a lost it
    await lease.release(key, "a")  # not a's: nothing happens
    assert await lease.holder(key) == "b"
    await lease.release(key, "b")
    assert await lease.holder(key) is None
    assert await lease.take(key, "c", values)  # free at once, not after the expiry
    assert await lease.holder(key) == "c"


async def test_expiry_is_stored_in_the_columns_kind(db: Database) -> None:
    await db.run_write(_endpoint, "hook")
    ev = Lease(db, EVENTS, 30.0, clock=Clock())
    assert await ev.take({"name": "hook"}, "a")
    row = await db.run_read(_row, EVENTS, {"name": "hook"})
    assert row is not None and row["lease_owner"] == "a"
    until = row["lease_until"]
    until = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    assert until == datetime.fromtimestamp(T0 + 30, UTC)  # a DateTime column
    await ev.release({"name": "hook"}, "a")
    row = await db.run_read(_row, EVENTS, {"name": "hook"})
    assert row is not None and row["lease_owner"] is None and row["lease_until"] is None
    assert row["failures"] == 0 and row["delivered"] == 0  # the rest of the row stays

    gc = Lease(db, GC, 30.0, clock=Clock())
    assert await gc.take({"name": "gc"}, "a", {"run_id": None})
    assert await gc.renew({"name": "gc"}, "a", {"run_id": 7})
    row = await db.run_read(_row, GC, {"name": "gc"})
    assert row == {"name": "gc", "holder": "a", "run_id": 7, "expires_at": T0 + 30}
    await gc.release({"name": "gc"}, "a", {"run_id": None})
    # released by expiring it: the holder column is not nullable, the row stays
    row = await db.run_read(_row, GC, {"name": "gc"})
    assert row == {"name": "gc", "holder": "a", "run_id": None, "expires_at": 0.0}


async def test_a_missing_row_is_not_made_unless_the_table_creates_them(db: Database) -> None:
    ev = Lease(db, EVENTS, 30.0, clock=Clock())
    assert not await ev.take({"name": "nobody"}, "a")
    assert await db.run_read(_row, EVENTS, {"name": "nobody"}) is None


async def test_not_reentrant_and_dead_holders(db: Database) -> None:
    clock = Clock()
    key = {"upstream": "https://up", "digest": "sha256:" + "b" * 64}
    fetches = Lease(db, MIRROR, 30.0, clock=clock)
    assert await fetches.take(key, "f1", MIRROR_VALUES, reentrant=False)
    # a live fetch is under way whoever asks, its own holder included
    assert not await fetches.take(key, "f1", MIRROR_VALUES, reentrant=False)
    assert await fetches.renew(key, "f1", {"upload_id": "u1", "written": 5})
    row = await db.run_read(_row, MIRROR, key)
    assert row is not None and (row["upload_id"], row["written"], row["size"]) == ("u1", 5, 10)
    clock.now += 31
    assert await fetches.take(key, "f2", {**MIRROR_VALUES, "size": 11}, reentrant=False)
    row = await db.run_read(_row, MIRROR, key)
    assert row is not None and (row["holder"], row["upload_id"], row["size"]) == ("f2", None, 11)

    gc = Lease(db, GC, 30.0, clock=clock)
    assert await gc.take({"name": "gc"}, "node-1", {"run_id": None})
    assert not await gc.take({"name": "gc"}, "node-2", {"run_id": None})
    # node-2 knows node-1 died (its run is gone): it takes the lease before it expires
    assert await gc.take({"name": "gc"}, "node-2", {"run_id": None}, dead="node-1")
    assert await gc.holder({"name": "gc"}) == "node-2"


async def test_racing_takers_one_wins(db: Database) -> None:
    """Many processes' worth of takers at once, on a missing row and an expired one:
    exactly one holds the lease each time."""
    clock = Clock()
    lease = Lease(db, REPLICATION, 30.0, clock=clock)
    for _round in range(2):
        won = await asyncio.gather(*(lease.take({"rule": "r"}, f"h{i}") for i in range(12)))
        assert sum(won) == 1
        winner = f"h{won.index(True)}"
        assert await lease.holder({"rule": "r"}) == winner
        clock.now += 31  # expired: the next round races for it again


async def test_the_functions_share_a_transaction(db: Database) -> None:
    """The SQL functions run inside a caller's own write, with its other statements."""
    key = {"rule": "nightly"}

    def take_twice(conn: Connection) -> tuple[bool, bool, str | None]:
        first = take(conn, REPLICATION, key, "a", T0, 30.0)
        second = take(conn, REPLICATION, key, "b", T0, 30.0)
        return first, second, holder_of(conn, REPLICATION, key, T0)

    assert await db.run_write(take_twice) == (True, False, "a")
    assert await db.run_write(renew, REPLICATION, key, "a", T0 + 10, 30.0, None)
    await db.run_write(release, REPLICATION, key, "a", None)
    assert await db.run_read(holder_of, REPLICATION, key, T0) is None


def test_a_lease_table_names_real_columns() -> None:
    with pytest.raises(ValueError, match="no column"):
        LeaseTable(gc_lease, ("name",), holder="owner")
    with pytest.raises(ValueError, match="a key of"):
        GC.where({"rule": "x"})
