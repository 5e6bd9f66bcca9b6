"""The SQL of backup and restore: where a database is, and what content it refers to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, inspect, select, union
from sqlalchemy.engine import make_url

from registry.meta.tables import blobs, manifests


@dataclass(frozen=True, slots=True)
class Location:
    """A metadata database as the backup tools name it: a SQLite file, or a PostgreSQL
    URL for libpq (``pg_dump``) without its password, which goes in ``PGPASSWORD``."""

    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None
    libpq_url: str = ""
    password: str | None = None


def locate(database_url: str) -> Location:
    """Where the database of ``database.url`` (SQLAlchemy's form) is."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("database.url: an in-memory SQLite database cannot be backed up")
        return Location("sqlite", path=Path(url.database).resolve())
    if url.get_backend_name() == "postgresql":
        plain = url.set(drivername="postgresql", password=None, query={})
        password = None if url.password is None else str(url.password)
        return Location("postgresql", libpq_url=plain.render_as_string(), password=password)
    raise ValueError(f"database.url: {url.get_backend_name()} databases are not supported")


def referenced_digests(conn: Connection) -> list[tuple[str, int]]:
    """Every digest whose bytes the metadata expects in storage (blobs and manifests),
    with its size."""
    known = union(
        select(blobs.c.digest, blobs.c.size),
        select(manifests.c.digest, manifests.c.size),
    )
    return [(row[0], row[1]) for row in conn.execute(known)]


def has_schema(conn: Connection) -> bool:
    """Whether the database holds any table (a Wharf schema, or something else)."""
    return bool(inspect(conn).get_table_names())
