"""The database handle: read and write transactions over SQLAlchemy.

Metadata code is written once, as plain functions of a synchronous ``Connection``, and
run here:

- reads on the async engine (aiosqlite or asyncpg) through ``run_sync``;
- writes on PostgreSQL in an async transaction the same way, retried a few times when
  PostgreSQL reports a race with another writer (a unique or foreign key violation, a
  serialization failure, a deadlock) or a connection lost in the middle (a restarted
  server): every write function is safe to run again;
- writes on SQLite in one dedicated writer thread with a synchronous engine: SQLite has a
  single writer anyway, and running each whole transaction in one hop keeps the write
  lock short (an async transaction holds it across one event-loop turn per statement).
  Every SQLite write transaction starts with ``BEGIN IMMEDIATE``, so writers in other
  processes queue on ``busy_timeout`` instead of failing on a lock upgrade.
  Writes queued meanwhile are committed together (group commit): the writer thread runs
  them in one transaction and answers every caller after the one COMMIT; should one of
  them raise, the group is rolled back and each runs again alone, so only that one
  fails. Under concurrent pushes this takes the cross-process lock, and SQLite's re-read
  of what another process wrote, once per batch instead of once per write.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
AFTER_COMMIT = "wharf.after_commit"  # Connection.info key: callbacks of the open transaction
GROUP_COMMIT_MAX = 64  # SQLite writes committed together at most
T = TypeVar("T")
log = logging.getLogger("wharf.db")

# PostgreSQL errors that mean "another transaction got there first": running the same
# transaction again sees its committed result (ON CONFLICT then finds the row, a deleted
# manifest is inserted again, ...).
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "23505",  # unique_violation
        "23503",  # foreign_key_violation
    }
)
PG_ATTEMPTS = 5


def _connection_lost(exc: BaseException) -> bool:
    """The server is unreachable, restarting, or dropped the connection: nothing was done."""
    if isinstance(exc, OSError):  # refused, reset: asyncpg lets these through on connect
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or ""
        return exc.connection_invalidated or state.startswith(("08", "57P"))
    return False


def _lost_race(exc: BaseException) -> bool:
    """Another writer got there first."""
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


async def _backoff(attempt: int) -> None:
    # 10 ms, 20 ms, ... 160 ms on average: rides out a lock wait or a fast restart.
    await asyncio.sleep(random.uniform(0.5, 1.5) * 0.01 * 2**attempt)


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
        # At most ``poolsize`` connections per process, no overflow: what a node opens
        # is known (nodes x workers x poolsize must stay below max_connections).
        kw.setdefault("pool_size", poolsize)
        kw.setdefault("max_overflow", 0)
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


@dataclass
class _Write:
    """A write transaction queued for the SQLite writer thread."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: Future[Any] = field(default_factory=Future)


def _answer(done: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Answer a queued write's caller, unless it went away: a caller cancelled while its
    write waited (a client gone) cancels its future, and answering that one would raise
    and leave the other writes of its group unanswered, their callers waiting forever."""
    try:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)
    except InvalidStateError:
        pass


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
        self._queued: queue.SimpleQueue[_Write] = queue.SimpleQueue()
        if self.is_sqlite:
            self._writer_engine = _sqlite_sync_engine(url, echo)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="wharf-sqlite-writer")
            database = make_url(url).database
            if database and database != ":memory:":
                self._lock_fd = os.open(f"{database}.writelock", os.O_RDWR | os.O_CREAT, 0o644)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on a connection that sees committed data."""
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        return await self._run_postgres(False, fn, args)

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a transaction: committed if it returns, else rolled back.

        On PostgreSQL a transaction that lost a race with another writer, or its
        connection, is run again, up to ``PG_ATTEMPTS`` times in all.
        """
        if self._writer is not None:
            write = _Write(fn, args)
            self._queued.put(write)
            # one drain per write: the first to run commits everything queued by then,
            # the later ones find the queue empty (or a later batch) and return
            self._writer.submit(self._sqlite_batch)
            result: T = await asyncio.wrap_future(write.done)
            return result
        return await self._run_postgres(True, fn, args)

    async def _run_postgres(self, write: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in range(PG_ATTEMPTS):
            try:
                if write:
                    done: list[Callable[[], None]] = []
                    async with self.engine.begin() as conn:
                        conn.info[AFTER_COMMIT] = done
                        try:
                            result: T = await conn.run_sync(fn, *args)
                        finally:
                            conn.info.pop(AFTER_COMMIT, None)
                    _run_after_commit(done)
                    return result
                async with self.engine.connect() as conn:
                    return await conn.run_sync(fn, *args)
            except (DBAPIError, OSError) as e:
                lost = _connection_lost(e)
                if attempt == PG_ATTEMPTS - 1 or not (lost or (write and _lost_race(e))):
                    if isinstance(e, OSError):  # answered as 503 like other database errors
                        raise OperationalError(fn.__name__, None, e) from e
                    raise
                reason = "database unreachable" if lost else "lost a race"
                log.info("%s: running %s again: %s", reason, fn.__name__, e)
                await _backoff(attempt)
        raise AssertionError("unreachable")

    def _sqlite_batch(self) -> None:
        """Run the queued writes in one transaction and answer each caller once the
        COMMIT is done. Should one of them raise, the group is rolled back and each
        write runs again alone, in its own transaction, so only that one fails."""
        batch: list[_Write] = []
        while len(batch) < GROUP_COMMIT_MAX:
            try:
                batch.append(self._queued.get_nowait())
            except queue.Empty:
                break
        if len(batch) > 1:
            try:
                results = self._sqlite_transaction(batch)
            except Exception:
                pass  # the group is rolled back: each alone, below
            except BaseException as e:
                self._fail(batch, e)
                raise
            else:
                for write, result in zip(batch, results, strict=True):
                    _answer(write.done, result)
                return
        for i, write in enumerate(batch):
            try:
                _answer(write.done, self._sqlite_transaction([write])[0])
            except Exception as e:
                _answer(write.done, error=e)
            except BaseException as e:
                self._fail(batch[i:], e)
                raise

    @staticmethod
    def _fail(writes: list[_Write], error: BaseException) -> None:
        for write in writes:
            _answer(write.done, error=error)

    def _sqlite_transaction(self, writes: list[_Write]) -> list[Any]:
        """``writes`` in one transaction: their results once committed; rolled back if
        one raises."""
        assert self._writer_engine is not None
        # Writers of other processes (workers, other nodes on this disk) queue on a file
        # lock, woken as soon as it is free, instead of SQLite's sleeping busy handler.
        with _file_lock(self._lock_fd), self._writer_engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            done: list[Callable[[], None]] = []
            conn.info[AFTER_COMMIT] = done
            try:
                results = [write.fn(conn, *write.args) for write in writes]
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            finally:
                conn.info.pop(AFTER_COMMIT, None)
            conn.exec_driver_sql("COMMIT")
            _run_after_commit(done)
            return results

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


def after_commit(conn: Connection, fn: Callable[[], None]) -> None:
    """Call ``fn`` once the transaction of ``conn`` (a :meth:`Database.run_write`'s) has
    committed, and never if it rolls back or runs again: for counters of what a
    transaction wrote. Outside ``run_write`` (a plain ``engine.begin()``), ``fn`` runs
    at once."""
    pending = conn.info.get(AFTER_COMMIT)
    if pending is None:
        fn()
    else:
        pending.append(fn)


def _run_after_commit(done: list[Callable[[], None]]) -> None:
    for fn in done:
        try:
            fn()
        except Exception:  # a counter must not fail a committed write
            log.exception("after commit")


__all__ = ["Connection", "Database", "after_commit", "make_engine"]
