"""The migrations make exactly the schema the table modules describe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from registry.meta.migrate import upgrade
from registry.tables import full_metadata


def test_migrated_schema_matches_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs: list[Any] = compare_metadata(context, full_metadata())
    engine.dispose()
    assert diffs == []
