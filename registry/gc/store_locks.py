"""Digest locks of garbage collection (issue #7): push-side operations take them shared,
GC's decisions exclusively (``docs/gc.md``).

On SQLite every write transaction runs alone (one writer, a file lock shared by all
processes), so the locks are implicit; on PostgreSQL they are transaction-level advisory
locks keyed by the digest.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def lock_key(digest: str) -> int:
    """A signed 64-bit advisory lock key for a digest (60 bits of its hex)."""
    hexpart = digest.split(":", 1)[-1]
    try:
        return int(hexpart[:15], 16)
    except ValueError:
        return hash(digest) & 0x0FFF_FFFF_FFFF_FFFF


def lock(conn: Connection, digests: Iterable[str], shared: bool) -> None:
    """Take transaction-level locks on ``digests`` (PostgreSQL; SQLite runs writers alone).

    Keys are taken in ascending order by everyone, so two lockers never deadlock on them.
    """
    if not is_pg(conn):
        return
    keys = sorted({lock_key(d) for d in digests})
    if not keys:
        return
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(
        text(f"SELECT {fn}(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) s"),
        {"keys": keys},
    )
