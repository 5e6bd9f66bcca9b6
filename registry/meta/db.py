"""The database handle: read and write transactions over SQLAlchemy.

Metadata code is written once, as plain functions of a synchronous ``Connection``, and
run here:

- reads on the async engine (aiosqlite or asyncpg) through ``run_sync``;
- writes on PostgreSQL in an async transaction the same way;
- writes on SQLite in one dedicated writer thread with a synchronous engine: SQLite has a
  single writer anyway, and running each whole transaction in one hop keeps the write
  lock short (an async transaction holds it across one event-loop turn per statement).
  Every SQLite write transaction starts with ``BEGIN IMMEDIATE``, so writers in other
  processes queue on ``busy_timeout`` instead of failing on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_kwargs(url: str, kw: dict[str, Any]) -> None:
    kw.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, poolsize: int = 10, echo: bool = False, **kw: Any) -> AsyncEngine:
    """An async engine for ``url`` with this project's SQLite settings applied."""
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        _sqlite_kwargs(url, kw)
    else:
        kw.setdefault("pool_size", poolsize)
        kw.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, echo=echo, **kw)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_sync_engine(url: str, echo: bool) -> Engine:
    sync_url = make_url(url).set(drivername="sqlite")
    kw: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_size": 1, "max_overflow": 0}
    _sqlite_kwargs(url, kw)
    engine = create_engine(sync_url, echo=echo, **kw)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def _file_lock(fd: int | None) -> Iterator[None]:
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class Database:
    """Runs metadata functions in read and write transactions."""

    def __init__(self, url: str, poolsize: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kw: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if self.is_sqlite else {}
        self.engine = make_engine(url, poolsize, echo, **kw)
        self._writer_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        if self.is_sqlite:
            self._writer_engine = _sqlite_sync_engine(url, echo)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="wharf-sqlite-writer")
            database = make_url(url).database
            if database and database != ":memory:":
                self._lock_fd = os.open(f"{database}.writelock", os.O_RDWR | os.O_CREAT, 0o644)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on a connection that sees committed data."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a transaction: committed if it returns, else rolled back."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._sqlite_transaction, fn, args)

    def _sqlite_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self._writer_engine is not None
        # Writers of other processes (workers, other nodes on this disk) queue on a
        # file lock, woken as soon as it is free, instead of SQLite's sleeping busy handler.
        with _file_lock(self._lock_fd), self._writer_engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
            return result

    async def ping(self) -> None:
        """Read the schema version; raises if the database is unreachable or unreadable."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT version_num FROM alembic_version")

    async def close(self) -> None:
        await self.engine.dispose()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self._writer_engine is not None:
            self._writer_engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


__all__ = ["Connection", "Database", "make_engine"]
