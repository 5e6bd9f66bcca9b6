"""The replication tables (migration 0006) on SQLite and PostgreSQL: runs, leases,
pending rows, saved uploads, mirror manifests and (migration 0008) mirror fetch leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.store import MetadataStore
from replicator.mirror_store import FetchLeases, FetchState, MirrorStore, mirrored_repositories
from replicator.store import ReplicationStore
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
    await store.fetched("hub/x", ["latest"], "sha256:a", "application/json", 10, [])
    await store.fetched("hub/x", ["latest"], "sha256:b", "application/json", 12, [])
    found = await store.get("hub/x", "latest")
    assert found is not None and found.digest == "sha256:b" and found.size == 12
    # the catalog lists the repositories holding a mirror's manifests, once each, in order
    await store.fetched("lib/c", ["v1"], "sha256:c", "application/json", 1, [])
    await store.fetched("hub/x", ["sha256:b"], "sha256:b", "application/json", 12, [])
    await store.fetched("hub/a", ["v1"], "sha256:a", "application/json", 1, [])
    meta = MetadataStore(db)
    meta.add_catalog_source(mirrored_repositories)  # as the mirror's installation does
    assert await meta.catalog(None, None) == ["hub/a", "hub/x", "lib/c"]
    assert await meta.catalog(2, None) == ["hub/a", "hub/x"]
    assert await meta.catalog(2, "hub/x") == ["lib/c"]


async def test_mirror_fetch_leases(db: Database) -> None:
    """Migration 0008: one fetcher per (upstream, digest) among racing processes; its
    progress for the others to read; a dead fetcher's lease taken over once expired."""
    other = Database(db.url, 2)  # another process on the same database
    try:
        up, digest = "http://upstream", "sha256:" + "a" * 64
        leases = [FetchLeases(db), FetchLeases(other)]
        won = await asyncio.gather(
            *(leases[i % 2].take(up, digest, f"h{i}", 60, 100) for i in range(8))
        )
        assert sum(won) == 1
        holder = f"h{won.index(True)}"
        state = await leases[1].state(up, digest)
        assert state == FetchState(holder, None, 0, 100, True)
        assert not await leases[0].take(up, digest, "late", 60, 100)
        assert await leases[0].renew(up, digest, holder, 60, "upload-1", 40)
        assert await leases[1].state(up, digest) == FetchState(holder, "upload-1", 40, 100, True)
        assert not await leases[0].renew(up, digest, "not-the-holder", 60, None, 0)
        await leases[0].end(up, digest, "not-the-holder")  # only the holder's row goes
        assert await leases[0].state(up, digest) is not None
        # the holder dies: its lease runs out and another takes the fetch over
        assert await leases[0].renew(up, digest, holder, -1, "upload-1", 50)
        state = await leases[1].state(up, digest)
        assert state is not None and not state.live
        assert await leases[1].take(up, digest, "successor", 60, 100)
        assert await leases[0].state(up, digest) == FetchState("successor", None, 0, 100, True)
        assert not await leases[0].renew(up, digest, holder, 60, "upload-1", 60)  # too late
        await leases[1].end(up, digest, "successor")
        assert await leases[0].state(up, digest) is None
        assert await leases[0].take(up, "sha256:" + "b" * 64, "h", 60, 1)  # per digest
        assert await leases[0].take("http://other", digest, "h", 60, 1)  # per upstream
    finally:
        await other.close()
