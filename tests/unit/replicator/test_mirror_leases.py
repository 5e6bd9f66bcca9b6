"""The pull-through mirror's blob fetch leases (replicator/mirror_store.py) on a fake clock:
one fetch per (upstream, digest), live until ``ttl`` after its last renewal; a dead
fetcher's lease expires and a successor takes the fetch over from byte zero."""

from __future__ import annotations

from sqlalchemy import Connection, select

from registry.meta.db import Database
from replicator.mirror_store import FetchLeases, FetchState
from replicator.tables import mirror_fetches
from tests.support.clock import T0, Clock

DIGEST = "sha256:" + "c" * 64


def _row(conn: Connection) -> dict[str, object]:
    return dict(conn.execute(select(mirror_fetches)).mappings().one())


async def test_a_dead_fetchers_lease_expires_on_the_clock(db: Database) -> None:
    clock = Clock()
    leases = FetchLeases(db, clock)
    up = "https://upstream.example/" + "x" * 300  # the key keeps 255 characters of it
    assert await leases.take(up, DIGEST, "f1", 30, 100)
    row = await db.run_read(_row)
    assert row["upstream"] == up[:255] and row["expires_at"] == T0 + 30
    assert row["started_at"] == T0 and row["written"] == 0 and row["size"] == 100
    assert not await leases.take(up, DIGEST, "f1", 30, 100)  # under way, whoever asks
    assert not await leases.take(up, DIGEST, "f2", 30, 100)

    clock.now += 20
    assert await leases.renew(up, DIGEST, "f1", 30, "upload-1", 64)
    assert await leases.state(up, DIGEST) == FetchState("f1", "upload-1", 64, 100, True)
    clock.now += 29  # 49 s after the take, 29 after the renewal: still live
    assert not await leases.take(up, DIGEST, "f2", 30, 100)
    clock.now += 1  # f1 died: its lease ran out
    assert await leases.state(up, DIGEST) == FetchState("f1", "upload-1", 64, 100, False)
    assert await leases.take(up, DIGEST, "f2", 30, 101)
    assert await leases.state(up, DIGEST) == FetchState("f2", None, 0, 101, True)
    assert (await db.run_read(_row))["started_at"] == clock.now
    assert not await leases.renew(up, DIGEST, "f1", 30, "upload-1", 80)  # too late
    await leases.end(up, DIGEST, "f1")  # not f1's: nothing happens
    assert await leases.state(up, DIGEST) is not None
    await leases.end(up, DIGEST, "f2")
    assert await leases.state(up, DIGEST) is None
    assert await leases.take(up, DIGEST, "f3", 30, 100)  # free at once
