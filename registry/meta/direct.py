"""The hottest statements of the push path, run straight on SQLite's DBAPI cursor.

A manifest push runs a dozen small statements inside SQLite's single write lock, and
SQLAlchemy's execution machinery costs about ten times what SQLite itself does for each
(about 50 us against 4 us here). These helpers compile a statement once per dialect and
set of parameter names with SQLAlchemy itself, keep its SQL text, positional order and
bind processors (so values are converted exactly as SQLAlchemy would, datetimes above
all), and execute it on the connection's DBAPI cursor inside the same transaction.

Only statements SQLAlchemy compiles to plain positional SQL take this path: no expanding
(``IN``) parameters, no Python-side column defaults, no result processing (callers read
integers and strings). Anything else, and every statement on PostgreSQL, runs through
``Connection.execute`` as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: Params  # values given in the statement itself (``set_={"n": 0}``)

    def values(self, params: Params) -> tuple[Any, ...]:
        given = {**self.fixed, **params} if self.fixed else params
        return tuple(
            given[name] if proc is None else proc(given[name])
            for name, proc in zip(self.names, self.processors, strict=True)
        )


@cache
def _prepare(stmt: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Prepared | None:
    """``stmt`` compiled for ``dialect`` with parameters ``keys``; None if it cannot run
    as plain positional SQL."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if (
        dialect.paramstyle != "qmark"
        or compiled.positiontup is None
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.insert_prefetch
        or compiled.update_prefetch
    ):
        return None
    names = tuple(compiled.positiontup)
    if any(compiled.binds[name].required for name in names if name not in keys):
        return None  # SQLAlchemy would refuse it: let it say so
    fixed = {name: compiled.binds[name].effective_value for name in names if name not in keys}
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return _Prepared(compiled.string, names, processors, fixed)


def available(conn: Connection) -> bool:
    """Does ``conn`` take this path (SQLite's writer engine; not aiosqlite, not
    PostgreSQL)?"""
    return conn.dialect.driver == "pysqlite"


def _prepared(conn: Connection, stmt: Executable, params: Params) -> _Prepared | None:
    if not available(conn):
        return None
    return _prepare(stmt, conn.dialect, tuple(sorted(params)))


def _cursor(conn: Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def execute(conn: Connection, stmt: Executable, params: Params) -> int:
    """Run a statement with one set of parameters; the rows it changed."""
    prepared = _prepared(conn, stmt, params)
    if prepared is None:
        return int(conn.execute(stmt, params).rowcount)
    cursor = _cursor(conn)
    try:
        cursor.execute(prepared.sql, prepared.values(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def execute_many(conn: Connection, stmt: Executable, rows: Sequence[Params]) -> None:
    """Run a statement for each of ``rows`` (all with the same keys)."""
    if not rows:
        return
    prepared = _prepared(conn, stmt, rows[0])
    if prepared is None:
        conn.execute(stmt, list(rows))
        return
    cursor = _cursor(conn)
    try:
        cursor.executemany(prepared.sql, [prepared.values(row) for row in rows])
    finally:
        cursor.close()


def first(conn: Connection, stmt: Executable, params: Params) -> tuple[Any, ...] | None:
    """The first row of a query (or of ``RETURNING``), as a plain tuple; None if none."""
    prepared = _prepared(conn, stmt, params)
    if prepared is None:
        row = conn.execute(stmt, params).first()
        return None if row is None else tuple(row)
    cursor = _cursor(conn)
    try:
        cursor.execute(prepared.sql, prepared.values(params))
        found = cursor.fetchone()
        if found is not None:
            cursor.fetchall()  # finish the statement (RETURNING runs to the end)
        return None if found is None else tuple(found)
    finally:
        cursor.close()


def scalar(conn: Connection, stmt: Executable, params: Params) -> Any:
    """The first column of the first row; None if there is no row."""
    row = first(conn, stmt, params)
    return None if row is None else row[0]


def rows(conn: Connection, stmt: Executable, params: Params) -> list[tuple[Any, ...]]:
    """Every row of a query, as plain tuples."""
    prepared = _prepared(conn, stmt, params)
    if prepared is None:
        return [tuple(row) for row in conn.execute(stmt, params)]
    cursor = _cursor(conn)
    try:
        cursor.execute(prepared.sql, prepared.values(params))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
