"""The SQLite writer's direct path writes and reads exactly what SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects import sqlite

from registry.meta import direct

md = MetaData()
things = Table(
    "things",
    md,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("n", Integer, nullable=False, default=7),  # a Python-side default
)


def test_direct_statements_match_sqlalchemy(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 't.db'}", isolation_level="AUTOCOMMIT")
    md.create_all(engine)
    at = datetime(2026, 11, 27, 12, 30, 45, 123456, tzinfo=UTC)
    ignore = sqlite.insert(things).on_conflict_do_nothing()
    by_name = select(things.c.id).where(things.c.name == bindparam("name"))
    upsert = (
        sqlite.insert(things)
        .on_conflict_do_update(index_elements=[things.c.name], set_={"n": 0})
        .returning(things.c.id)
    )
    through_sqlalchemy: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: through_sqlalchemy.append(a[2]))
    with engine.connect() as conn:
        assert direct.available(conn)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        rows = [{"name": "a", "at": at, "n": 1}, {"name": "b", "at": at, "n": 2}]
        direct.execute_many(conn, ignore, rows)
        assert direct.execute(conn, ignore, {"name": "a", "at": at, "n": 9}) == 0  # ignored
        conn.execute(ignore, {"name": "c", "at": at, "n": 3})  # the same through SQLAlchemy
        # a parameter left to its Python-side default: SQLAlchemy runs it
        assert direct.execute(conn, ignore, {"name": "d", "at": at}) == 1
        new_id = direct.scalar(conn, upsert, {"name": "e", "at": at, "n": 5})
        assert direct.scalar(conn, upsert, {"name": "e", "at": at, "n": 6}) == new_id  # n=0 now
        assert direct.scalar(conn, by_name, {"name": "e"}) == new_id
        assert direct.scalar(conn, by_name, {"name": "missing"}) is None
        conn.exec_driver_sql("COMMIT")
        # only the explicit SQLAlchemy insert and the one needing a default went through it
        assert [sql.split()[0] for sql in through_sqlalchemy] == [
            "BEGIN",
            "INSERT",
            "INSERT",
            "COMMIT",
        ]
        got = conn.execute(select(things.c.name, things.c.at, things.c.n).order_by("name")).all()
        raw = conn.exec_driver_sql("SELECT name, at FROM things ORDER BY name").all()
    assert [(r.name, r.at.replace(tzinfo=UTC), r.n) for r in got] == [
        ("a", at, 1),
        ("b", at, 2),
        ("c", at, 3),
        ("d", at, 7),
        ("e", at, 0),
    ]
    assert len({stored for _, stored in raw}) == 1  # one text form, whichever path wrote it
