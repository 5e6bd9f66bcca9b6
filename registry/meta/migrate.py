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


async def current_revision(url: str) -> str | None:
    """The database's revision, or None for an empty database."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:

            def rev(sync_conn: Any) -> str | None:
                return MigrationContext.configure(sync_conn).get_current_revision()

            return await conn.run_sync(rev)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: Any) -> None:
                cfg = _config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def ensure_schema(url: str) -> None:
    """Create the schema in an empty database; refuse an out-of-date one.

    Raises :class:`SchemaOutOfDate` telling the operator to run ``wharf db upgrade``.
    """
    current = await current_revision(url)
    head = head_revision()
    if current is None:
        await upgrade(url)
    elif current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, this Wharf needs {head}: "
            "run `wharf db upgrade` first"
        )
