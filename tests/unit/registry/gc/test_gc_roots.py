"""GC's roots seam (registry/gc/store_mark.py ``KeepRoots``): what a feature keeps that no
tag reaches. The pull-through mirror's cache (no manifest rows, no tags: links, blobs and
the manifests' bytes) is collected by a GC given no roots, and kept by one given the
replicator's ``MirrorRoots``; other garbage goes either way. SQLite and a filesystem."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select

from registry.gc import store_mark, store_usage
from registry.gc.collector import Collector, GCOptions
from registry.gc.store_mark import KeepRoots, MarkOptions
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.tables import blobs, repositories, repository_blobs
from replicator.mirror_store import MirrorRoots
from replicator.tables import mirror_manifests
from storage.blobs import BlobStore
from storage.digest import Digest
from storage.filesystem import FilesystemDriver
from storage.layout import blob_path

OLD = time.time() - 7200  # older than the grace period below


class Registry:
    """A mirror's cache in ``hub/library/cached`` (a layer linked, its manifest's bytes
    noted in ``mirror_manifests``), and garbage: a blob linked into a repository nothing
    tags, and an orphan file."""

    def __init__(self, root: Path, db: Database) -> None:
        self.root = root
        self.db = db
        self.driver = FilesystemDriver(root)
        self.store = BlobStore(self.driver)

    def file(self, digest: Digest) -> Path:
        return self.root / blob_path(digest)

    async def put(self, data: bytes) -> Digest:
        digest = await self.store.put(data)
        os.utime(self.file(digest), (OLD, OLD))
        return digest

    async def fill(self) -> None:
        self.layer = await self.put(b"a layer the mirror fetched")
        self.manifest = await self.put(b'{"a manifest": "the mirror fetched"}')
        self.garbage = await self.put(b"a layer nothing keeps")
        self.orphan = await self.put(b"bytes no row names")
        at = datetime.fromtimestamp(OLD, UTC)

        def rows(conn: Connection) -> None:
            for name in ("hub/library/cached", "local/untagged"):
                conn.execute(insert(repositories).values(name=name, created_at=at))
            ids = dict(conn.execute(select(repositories.c.name, repositories.c.id)).all())
            for repo, digest in (
                ("hub/library/cached", self.layer),
                ("local/untagged", self.garbage),
            ):
                conn.execute(insert(blobs).values(digest=str(digest), size=10, created_at=at))
                conn.execute(
                    insert(repository_blobs).values(
                        repository_id=ids[repo], digest=str(digest), created_at=at
                    )
                )
            conn.execute(
                insert(mirror_manifests).values(
                    repository="hub/library/cached",
                    reference="v1",
                    digest=str(self.manifest),
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=36,
                    checked_at=OLD,
                )
            )

        await self.db.run_write(rows)

    async def gc(self, roots: Sequence[KeepRoots]) -> dict[str, object]:
        collector = Collector(self.db, self.driver, roots=roots)
        result = await collector.run(GCOptions(grace=60.0, upload_age=None), "test")
        return result.summary()

    async def links(self) -> set[tuple[str, str]]:
        def read(conn: Connection) -> set[tuple[str, str]]:
            query = select(repositories.c.name, repository_blobs.c.digest).join(
                repositories, repositories.c.id == repository_blobs.c.repository_id
            )
            return {(name, digest) for name, digest in conn.execute(query)}

        return await self.db.run_read(read)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    try:
        world = Registry(tmp_path / "data", db)
        await world.fill()
        yield world
    finally:
        await db.close()


async def test_without_roots_a_mirrors_cache_is_garbage(registry: Registry) -> None:
    result = await registry.gc(())
    assert result["blobs_deleted"] == 2 and result["links_deleted"] == 0
    assert result["orphan_files_deleted"] == 2  # the orphan and the manifest's bytes
    for digest in (registry.layer, registry.manifest, registry.garbage, registry.orphan):
        assert not registry.file(digest).exists(), digest
    assert await registry.links() == set()


async def test_the_mirrors_roots_keep_its_cache(registry: Registry) -> None:
    roots = [MirrorRoots()]
    opts = MarkOptions(cutoff=time.time() - 60.0)
    found = await registry.db.run_read(store_mark.mark, opts, roots)
    assert found.blobs == [(str(registry.garbage), 10)]
    assert found.links == []
    usage = await registry.db.run_read(store_usage.usage, opts, roots)
    assert usage["registry"]["reclaimable_blobs"] == 1
    assert (await registry.db.run_read(store_usage.usage, opts))["registry"][
        "reclaimable_blobs"
    ] == 2

    result = await registry.gc(roots)
    assert result["blobs_deleted"] == 1 and result["orphan_files_deleted"] == 1
    assert registry.file(registry.layer).exists() and registry.file(registry.manifest).exists()
    assert not registry.file(registry.garbage).exists()
    assert not registry.file(registry.orphan).exists()
    assert await registry.links() == {("hub/library/cached", str(registry.layer))}
