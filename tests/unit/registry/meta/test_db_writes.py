"""SQLite writes are committed in groups, answered only once the group's COMMIT is done;
a failing write fails alone (the group is rolled back and each write runs again alone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, insert, select

from registry.meta.db import Database

md = MetaData()
items = Table("items", md, Column("n", Integer, primary_key=True))


class Refused(Exception):
    pass


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    database = Database(url, 2)
    await database.run_write(lambda conn: md.create_all(conn))
    try:
        yield database
    finally:
        await database.close()


def _add(conn: Connection, n: int) -> int:
    conn.execute(insert(items).values(n=n))
    if n % 5 == 0:
        raise Refused(n)  # after writing: its row must not stay
    return n * 10


def _all(conn: Connection) -> list[int]:
    return list(conn.execute(select(items.c.n).order_by(items.c.n)).scalars())


async def test_concurrent_writes_commit_together_and_a_failing_one_alone_rolls_back(
    db: Database,
) -> None:
    results = await asyncio.gather(
        *(db.run_write(_add, n) for n in range(1, 41)), return_exceptions=True
    )
    for n, result in zip(range(1, 41), results, strict=True):
        if n % 5 == 0:
            assert isinstance(result, Refused) and result.args == (n,)
        else:
            assert result == n * 10
    assert await db.run_read(_all) == [n for n in range(1, 41) if n % 5]


async def test_a_write_that_conflicts_with_an_earlier_one_of_its_group_fails_alone(
    db: Database,
) -> None:
    # the same key twice in one group: the second insert violates the primary key
    results = await asyncio.gather(
        db.run_write(_add, 7), db.run_write(_add, 7), db.run_write(_add, 8), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results).count("int") == 2
    assert await db.run_read(_all) == [7, 8]


async def test_a_lone_failing_write_leaves_nothing(db: Database) -> None:
    with pytest.raises(Refused):
        await db.run_write(_add, 10)
    assert await db.run_read(_all) == []


async def test_a_write_whose_caller_went_away_leaves_its_group_answered(db: Database) -> None:
    """A caller cancelled while its write waits in the queue (a client gone, a fetch's
    lease reporter stopped) must not leave the writes grouped with it unanswered."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: Connection) -> None:  # holds the writer while the others queue
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.3)

    blocker = asyncio.create_task(db.run_write(slow))
    await started.wait()
    gone = asyncio.create_task(db.run_write(_add, 1))
    kept = asyncio.create_task(db.run_write(_add, 2))
    await asyncio.sleep(0.05)  # both queued behind the slow one
    gone.cancel()
    assert await asyncio.wait_for(kept, 5) == 20
    await blocker
    assert 2 in await db.run_read(_all)
