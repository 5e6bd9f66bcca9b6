"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.meta.db import Database
from registry.meta.migrate import ensure_schema


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A metadata database with the whole schema, on SQLite and on PostgreSQL (a private
    cluster: the ``postgres`` fixture)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    database = Database(url, 4)
    try:
        yield database
    finally:
        await database.close()
