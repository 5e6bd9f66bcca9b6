"""Usage per project kept by the quota hook in each change's transaction, the quota
enforced there, GC's removals seam, and the recount (registry/quotas/). SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, select

from registry.content.names import project_of
from registry.gc.collector import Collector, GCOptions
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.records import NewManifest
from registry.meta.store import MetadataStore
from registry.quotas import store as quota_store
from registry.quotas.errors import QuotaExceeded
from registry.quotas.hook import QuotaAccounting, QuotaEvent, QuotaMetrics, crossed
from registry.quotas.service import QuotaService
from registry.quotas.tables import project_usage
from registry.sizes import format_size, parse_size
from storage.filesystem import FilesystemDriver
from tests.support.quotas import add_project


def d(c: str) -> str:
    return "sha256:" + c * 64


def manifest(digest: str, size: int, blobs: tuple[tuple[str, int], ...]) -> NewManifest:
    return NewManifest(
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=size,
        artifact_type=None,
        subject=None,
        annotations=None,
        blobs=blobs,
        children=(),
    )


class World:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root
        self.events: list[QuotaEvent] = []
        self.hook = QuotaAccounting(
            "library", QuotaMetrics(CollectorRegistry()), [lambda _c, e: self.events.append(e)]
        )
        self.meta = MetadataStore(db, [self.hook])
        self.quotas = QuotaService(db, "library")

    async def project(self, name: str, quota: int | None = None) -> None:
        await self.db.run_write(add_project, name, quota)

    async def used(self, project: str) -> int:
        return (await self.quotas.usage(project)).bytes

    async def stored_usage(self) -> dict[str, int]:
        def read(conn: Connection) -> dict[str, int]:
            return {str(p): int(b) for p, b in conn.execute(select(project_usage))}

        return await self.db.run_read(read)

    async def assert_recount_agrees(self) -> None:
        before = await self.stored_usage()
        changes = await self.quotas.recount()
        assert all(old == new for old, new in changes.values()), changes
        assert {p: b for p, b in before.items() if b} == {
            p: b for p, b in (await self.stored_usage()).items() if b
        }

    async def push(self, repo: str, tag: str, m: str, msize: int, *layers: tuple[str, int]) -> None:
        for digest, size in layers:
            await self.meta.link_blob(repo, digest, size)
        await self.meta.put_manifest(repo, manifest(m, msize, layers), tag)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    try:
        yield World(db, tmp_path / "data")
    finally:
        await db.close()


def test_project_of_and_sizes() -> None:
    assert project_of("team-a/app", "library") == "team-a"
    assert project_of("team-a/x/y", "library") == "team-a"
    assert project_of("app", "library") == "library"
    assert project_of("app", "base") == "base"
    assert parse_size("10GiB") == 10 * 1024**3
    assert parse_size("500MB") == 500_000_000
    assert parse_size("1.5 KiB") == 1536
    assert parse_size("123") == 123
    for bad in ("-5", "ten", "5 parsecs", "", "1e3"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(None) == "none"
    assert format_size(10 * 1024**3) == "10.0 GiB"


def test_thresholds_crossed_upwards_only() -> None:
    assert crossed(0, 79, 100) == []
    assert crossed(79, 80, 100) == [80]
    assert crossed(50, 100, 100) == [80, 100]
    assert crossed(80, 90, 100) == []
    assert crossed(90, 80, 100) == []


async def test_a_blob_counts_once_per_project_and_shared_bytes(world: World) -> None:
    await world.push("team/a", "v1", d("m"), 100, (d("1"), 1000), (d("2"), 10))
    await world.push("team/b", "v1", d("n"), 100, (d("1"), 1000), (d("3"), 20))
    # the layer d1 once, both configs, both manifests
    assert await world.used("team") == 1000 + 10 + 20 + 100 + 100
    assert (await world.quotas.usage("team")).repositories == 2
    assert (await world.quotas.usage("team")).shared_bytes == 0
    await world.push("other/c", "v1", d("o"), 50, (d("1"), 1000))
    await world.push("top", "v1", d("p"), 70, (d("3"), 20))  # no slash: library
    other = await world.quotas.usage("other")
    assert (other.bytes, other.shared_bytes) == (1050, 1000)
    team = await world.quotas.usage("team")
    assert (team.bytes, team.shared_bytes) == (1230, 1020)  # d1 with other, d3 with library
    library = await world.quotas.usage("library")
    assert (library.bytes, library.shared_bytes, library.repositories) == (90, 20, 1)
    await world.assert_recount_agrees()


async def test_removals_uncount_what_no_repository_of_the_project_holds(world: World) -> None:
    await world.push("team/a", "v1", d("m"), 100, (d("1"), 1000))
    await world.meta.link_blob("team/b", d("1"), 1000, from_repository="team/a")  # a mount
    assert await world.used("team") == 1100
    assert await world.meta.delete_manifest("team/a", d("m"))
    assert await world.used("team") == 1000
    assert await world.meta.unlink_blob("team/a", d("1"))
    assert await world.used("team") == 1000  # team/b still holds it
    assert await world.meta.unlink_blob("team/b", d("1"))
    assert await world.used("team") == 0
    await world.assert_recount_agrees()


async def test_a_push_over_the_quota_is_refused_and_leaves_nothing(world: World) -> None:
    await world.project("team", quota=1500)
    await world.push("team/a", "v1", d("m"), 100, (d("1"), 1000))
    with pytest.raises(QuotaExceeded) as refused:
        await world.meta.link_blob("team/a", d("2"), 401)
    assert refused.value.detail == {"project": "team", "quota": 1500, "usage": 1100, "adding": 401}
    assert "team" in refused.value.message and "1500" in refused.value.message
    assert await world.meta.blob_size("team/a", d("2")) is None
    assert await world.used("team") == 1100
    # a blob the project holds already adds nothing: accepted even when full
    await world.meta.link_blob("team/b", d("1"), 1000)
    await world.meta.link_blob("team/a", d("2"), 400)  # exactly the quota
    assert await world.used("team") == 1500
    with pytest.raises(QuotaExceeded):  # a manifest's own bytes count too
        await world.meta.put_manifest("team/a", manifest(d("n"), 1, ((d("2"), 400),)), "v2")
    assert await world.meta.resolve("team/a", tag="v2") is None
    assert await world.meta.list_tags("team/a", None, None) == ["v1"]
    assert await world.used("team") == 1500
    await world.quotas.set_quota("team", 1000)  # lowered below the usage
    await world.meta.link_blob("team/a", d("e"), 0)  # adds nothing: accepted
    with pytest.raises(QuotaExceeded):
        await world.meta.link_blob("team/a", d("f"), 1)
    # other projects are not affected
    await world.push("free/a", "v1", d("o"), 10, (d("3"), 5000))
    await world.assert_recount_agrees()


async def test_events_when_usage_crosses_80_and_100_percent(world: World) -> None:
    await world.project("team", quota=1000)
    await world.meta.link_blob("team/a", d("1"), 700)
    assert world.events == []
    await world.meta.link_blob("team/a", d("2"), 150)
    assert [(e.action, e.threshold, e.usage, e.quota) for e in world.events] == [
        ("quota_warning", 80, 850, 1000)
    ]
    await world.meta.link_blob("team/a", d("3"), 150)
    assert [e.action for e in world.events] == ["quota_warning", "quota_exceed"]
    assert world.events[-1].target()["project"] == "team"
    with pytest.raises(QuotaExceeded):
        await world.meta.link_blob("team/a", d("4"), 1)
    assert len(world.events) == 2


async def test_quota_changes_and_unknown_projects(world: World) -> None:
    await world.project("team")
    usage = await world.quotas.set_quota("team", 10)
    assert (usage.quota, usage.percent) == (10, 0.0)
    await world.meta.link_blob("team/a", d("1"), 5)
    assert (await world.quotas.usage("team")).percent == 50.0
    assert (await world.quotas.set_quota("team", None)).quota is None
    await world.meta.link_blob("team/a", d("2"), 50)
    from registry.quotas.errors import ProjectUnknown

    with pytest.raises(ProjectUnknown):
        await world.quotas.set_quota("nope", 10)
    with pytest.raises(ProjectUnknown):
        await world.quotas.usage("nope")


async def test_recount_repairs_drift(world: World) -> None:
    await world.push("team/a", "v1", d("m"), 100, (d("1"), 1000))

    def drift(conn: Connection) -> None:
        conn.execute(project_usage.update().values(bytes=7))
        quota_store.add(conn, "ghost", d("9"), 3)

    await world.db.run_write(drift)
    changes = await world.quotas.recount()
    assert changes == {"team": (7, 1100), "ghost": (3, 0)}
    assert await world.stored_usage() == {"team": 1100}


async def test_gc_removals_bring_usage_down_to_a_recount(world: World) -> None:
    await world.push("team/a", "v1", d("m"), 100, (d("1"), 1000), (d("2"), 10))
    await world.push("team/a", "v2", d("n"), 100, (d("1"), 1000), (d("3"), 30))
    await world.meta.link_blob("team/b", d("4"), 44)  # a link no manifest uses
    assert await world.meta.delete_tag("team/a", "v2")  # d("n") untagged
    assert await world.used("team") == 1000 + 10 + 30 + 44 + 200
    collector = Collector(
        world.db, FilesystemDriver(world.root), removed=[world.hook.removed]
    )  # no change hooks, as `wharf gc` runs
    await collector.run(GCOptions(grace=0.0, delete_untagged=True, upload_age=None), "test")
    assert await world.used("team") == 1000 + 10 + 100
    await world.assert_recount_agrees()


async def test_the_migration_counts_what_existing_repositories_hold(tmp_path: Path) -> None:
    from registry.meta.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade(url, "0011")
    # today's store also reads the quarantine (#18, a later revision): for these writes only
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("CREATE TABLE blob_quarantine (digest VARCHAR(150) PRIMARY KEY)")
    db = Database(url, 1)
    try:
        meta = MetadataStore(db)  # a registry from before quotas: no hook
        await meta.link_blob("team/a", d("1"), 1000)
        await meta.link_blob("team/b", d("1"), 1000)
        await meta.put_manifest("team/a", manifest(d("m"), 100, ((d("1"), 1000),)), "v1")
        await meta.link_blob("top", d("2"), 20)
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("DROP TABLE blob_quarantine")
    await upgrade(url)
    db = Database(url, 1)
    try:
        world = World(db, tmp_path)
        assert await world.stored_usage() == {"team": 1100, "library": 20}
        await world.assert_recount_agrees()
    finally:
        await db.close()
