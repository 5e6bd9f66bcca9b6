"""The migrations make exactly the schema the table modules describe."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from registry.meta.migrate import upgrade
from registry.meta.tables import metadata

FEATURE_TABLES = (
    "registry.accounts.tables",
    "registry.events.tables",
    "registry.gc.tables",
    "registry.projects.tables",
    "registry.quotas.tables",
    "registry.search.tables",
    "registry.ui.tables",
    "replicator.tables",
)


def test_migrated_schema_matches_the_tables(tmp_path: Path) -> None:
    for module in FEATURE_TABLES:
        importlib.import_module(module)
    path = tmp_path / "meta.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs: list[Any] = compare_metadata(context, metadata)
    engine.dispose()
    assert diffs == []
