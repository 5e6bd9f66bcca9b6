"""``after_commit``: a callback runs once its transaction has committed, and never for
one that rolled back (alone or with its SQLite group), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import Connection, text

from registry.meta.db import Database, after_commit


class Refused(Exception):
    pass


async def test_callbacks_run_for_committed_writes_only(db: Database) -> None:
    ran: list[str] = []

    def write(conn: Connection, name: str, fail: bool) -> str:
        conn.execute(text("SELECT 1"))
        after_commit(conn, lambda: ran.append(name))
        if fail:
            raise Refused(name)
        return name

    results = await asyncio.gather(
        *(db.run_write(write, f"w{i}", i % 3 == 1) for i in range(9)),
        return_exceptions=True,
    )
    assert [isinstance(r, Refused) for r in results] == [i % 3 == 1 for i in range(9)]
    assert sorted(ran) == sorted(f"w{i}" for i in range(9) if i % 3 != 1)
    # a later transaction on the same pooled connection does not run earlier callbacks
    ran.clear()
    assert await db.run_write(write, "later", False) == "later"
    assert ran == ["later"]


def test_outside_run_write_the_callback_runs_at_once() -> None:
    from sqlalchemy import create_engine

    ran: list[int] = []
    with create_engine("sqlite://").begin() as conn:
        after_commit(conn, lambda: ran.append(1))
    assert ran == [1]
