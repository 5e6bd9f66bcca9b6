"""The replication tables (migration 0006) on SQLite and PostgreSQL: runs, leases,
pending rows, saved uploads, mirror manifests, and the migration's downgrade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.mirror import MirrorStore
from registry.meta.replication import ReplicationStore
from tests.support.postgres import PostgresCluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    await ensure_schema(url)
    database = Database(url, 2)
    yield database
    await database.close()


async def test_runs_leases_pending_uploads(db: Database) -> None:
    store = ReplicationStore(db)
    run = await store.start_run("r1", "manual", "node-a")
    await store.finish_run(run, "failed", {"bytes": 5, "blobs_copied": 1}, ["boom"])
    ok = await store.start_run("r1", "schedule", "node-a")
    await store.finish_run(ok, "ok", {"tags_copied": 2}, [])
    runs = await store.runs("r1")
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert runs[1]["errors"] == ["boom"] and runs[1]["bytes"] == 5
    assert (await store.latest("ok"))["r1"]["id"] == ok
    assert (await store.latest(None))["r1"]["tags_copied"] == 2
    # one holder at a time, until it releases or its lease expires
    assert await store.acquire("r1", "w1", 60)
    assert not await store.acquire("r1", "w2", 60)
    assert await store.acquire("r1", "w1", 60)  # renewal
    await store.release("r1", "w1")
    assert await store.acquire("r1", "w2", -1)  # expired at once
    assert await store.acquire("r1", "w3", 60)
    # pending rows
    await store.add_pending("r1", "a/b", "v1")
    await store.add_pending("r1", "a/b", "v2")
    pending = await store.pending("r1")
    assert [(p.repository, p.tag) for p in pending] == [("a/b", "v1"), ("a/b", "v2")]
    assert "r1" in await store.oldest_pending()
    await store.done_pending([pending[0].id])
    assert [p.tag for p in await store.pending("r1")] == ["v2"]
    # saved uploads
    await store.save_upload("r1", "a/b", "sha256:x", "http://t/up/1", 10)
    await store.save_upload("r1", "a/b", "sha256:x", "http://t/up/1?s=2", 20)
    assert await store.upload("r1", "a/b", "sha256:x") == ("http://t/up/1?s=2", 20)
    await store.drop_upload("r1", "a/b", "sha256:x")
    assert await store.upload("r1", "a/b", "sha256:x") is None


async def test_mirror_manifests(db: Database) -> None:
    store = MirrorStore(db)
    assert await store.get("hub/x", "latest") is None
    await store.put("hub/x", "latest", "sha256:a", "application/json", 10)
    await store.put("hub/x", "latest", "sha256:b", "application/json", 12)
    found = await store.get("hub/x", "latest")
    assert found is not None and found.digest == "sha256:b" and found.size == 12
