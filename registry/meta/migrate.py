"""Schema migrations with Alembic, run on the registry's own async engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from registry.meta.db import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(Exception):
    """Raised when the database's schema is older (or newer) than this code's."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


# Held (on PostgreSQL) while a process reads the schema revision and migrates: nodes and
# workers starting at once on an empty database create the schema once, one after another.
MIGRATION_LOCK_KEY = 0x77686172  # "whar"


def _lock(sync_conn: Any) -> None:
    if sync_conn.dialect.name == "postgresql":
        sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def _revision(sync_conn: Any) -> str | None:
    rev: str | None = MigrationContext.configure(sync_conn).get_current_revision()
    return rev


def _upgrade(sync_conn: Any, revision: str) -> None:
    cfg = _config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


async def current_revision(url: str) -> str | None:
    """The database's revision, or None for an empty database."""
    engine = make_engine(url, poolsize=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    engine = make_engine(url, poolsize=1)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: Any) -> None:
                _lock(sync_conn)
                _upgrade(sync_conn, revision)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def ensure_schema(url: str) -> None:
    """Create the schema in an empty database; refuse an out-of-date one.

    Raises :class:`SchemaOutOfDate` telling the operator to run ``wharf db upgrade``.
    On PostgreSQL the check and the creation hold an advisory lock, so that several
    nodes starting on an empty database create the schema once.
    """
    head = head_revision()
    engine = make_engine(url, poolsize=1)
    try:
        async with engine.begin() as conn:

            def check(sync_conn: Any) -> str | None:
                _lock(sync_conn)
                current = _revision(sync_conn)
                if current is None:
                    _upgrade(sync_conn, "head")
                return current

            current = await conn.run_sync(check)
    finally:
        await engine.dispose()
    if current is not None and current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, this Wharf needs {head}: "
            "run `wharf db upgrade` first"
        )


def known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this code's migrations (not a newer Wharf's)."""
    script = ScriptDirectory.from_config(_config())
    return any(r.revision == revision for r in script.walk_revisions())
