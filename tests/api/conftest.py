"""The API suite runs twice: on SQLite and on PostgreSQL metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def wharf(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    """A registry with the default configuration (and each database), shared by the session."""
    config: dict[str, Any] = {}
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": cluster.create_database()}
    server = WharfServer(tmp_path_factory.mktemp(f"wharf-{request.param}"), config).start()
    yield server
    server.stop()
