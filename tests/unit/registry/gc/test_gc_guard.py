"""The pin protocol of online GC, step by step, on a real SQLite database and filesystem:
the interleavings the stress test can only hit by chance."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, delete, insert, update

from registry.gc import store_doom, store_lease, store_locks, store_pins
from registry.gc.collector import Collector, GCOptions
from registry.gc.tables import gc_doomed, gc_seen
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.store import MetadataStore
from registry.meta.tables import blobs, repository_blobs
from registry.request_context import RequestInfo, current_request
from registry.service import pins
from storage.blobs import BlobStore
from storage.digest import Digest
from storage.filesystem import FilesystemDriver
from storage.layout import blob_path

UPLOAD_PUT = RequestInfo("req", "127.0.0.1", "localhost", "PUT", "test")


class World:
    def __init__(self, root: Path, db: Database) -> None:
        self.root = root
        self.db = db
        self.driver = FilesystemDriver(root)
        self.meta = MetadataStore(db, [store_pins.guard_change])
        self.blobs = BlobStore(self.driver)

    def file(self, digest: Digest) -> Path:
        return self.root / blob_path(digest)

    async def gc(self, grace: float = 0.0) -> dict[str, object]:
        collector = Collector(self.db, self.driver)
        result = await collector.run(GCOptions(grace=grace, upload_age=None), "test")
        return result.summary()

    def age(self, digest: Digest, seconds: float = 3600) -> None:
        old = time.time() - seconds
        os.utime(self.file(digest), (old, old))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    try:
        yield World(tmp_path, db)
    finally:
        await db.close()


async def test_gc_between_an_uploads_pin_and_its_link_makes_the_link_fail(world: World) -> None:
    """An upload commit pins, moves its bytes in, links. A GC that collects the bytes in
    between (the commit stalled past the grace period) makes the link refuse, not link
    missing bytes; the client's next attempt pins again and succeeds."""
    data = b"stalled upload"
    digest = await world.blobs.put(data)  # the "move": bytes in place, no row yet
    await world.db.run_write(store_pins.pin, [str(digest)], time.time() - 10)  # pinned 10 s ago
    world.age(digest)
    result = await world.gc(grace=5.0)  # the pin is older than the grace period
    assert result["orphan_files_deleted"] == 1 and not world.file(digest).exists()
    token = current_request.set(UPLOAD_PUT)
    try:
        with pytest.raises(pins.DigestBusy):
            await world.meta.link_blob("r", str(digest), len(data))
        assert await world.meta.blob_size("r", str(digest)) is None
        # the client uploads again: a fresh pin, the bytes, the link
        await world.db.run_write(store_pins.pin, [str(digest)], time.time())
        await world.blobs.put(data)
        await world.meta.link_blob("r", str(digest), len(data))
    finally:
        current_request.reset(token)
    assert await world.meta.blob_size("r", str(digest)) == len(data)
    assert (await world.gc(grace=5.0))["orphan_files_deleted"] == 0
    assert world.file(digest).exists()  # pinned within the grace period


async def test_a_pin_within_the_grace_period_keeps_bytes_no_row_names(world: World) -> None:
    data = b"moved in, not linked yet"
    digest = await world.blobs.put(data)
    world.age(digest)  # a rename keeps the upload's old mtime
    await world.db.run_write(store_pins.pin, [str(digest)], time.time())
    assert (await world.gc(grace=60.0))["orphan_files_deleted"] == 0
    assert world.file(digest).exists()


async def test_a_push_waits_while_a_live_run_deletes_its_digest(world: World) -> None:
    digest = "sha256:" + "ab" * 32
    now = time.time()
    assert await world.db.run_write(store_lease.acquire_lease, "gc-holder", now, 60.0)
    await world.db.run_write(store_lease.renew_lease, "gc-holder", now, 60.0, 7)

    def doom(conn: Connection) -> None:
        conn.execute(insert(gc_doomed).values(digest=digest, run_id=7, size=1, doomed_at=now))

    await world.db.run_write(doom)
    with pytest.raises(pins.DigestBusy):
        await world.db.run_write(store_pins.pin, [digest], time.time())
    # the run dies (its lease lapses): the next push forgets the doom and goes on
    await world.db.run_write(store_lease.release_lease, "gc-holder")
    await world.db.run_write(store_pins.pin, [digest], time.time())
    assert await world.db.run_read(store_doom.known_digests, [digest]) == set()


async def test_a_mount_whose_source_was_collected_fails_over(world: World) -> None:
    data = b"mounted late"
    digest = await world.blobs.put(data)
    await world.meta.link_blob("src", str(digest), len(data))
    ok_source = await world.meta.blob_size("src", str(digest))
    assert ok_source == len(data)
    # GC collects the source's link and bytes after the mount looked at them
    await world.db.run_write(_backdate, str(digest))
    world.age(digest)
    assert (await world.gc())["blobs_deleted"] == 1
    with pytest.raises(pins.MountSourceGone):
        await world.meta.link_blob("dst", str(digest), len(data), from_repository="src")
    assert await world.meta.blob_size("dst", str(digest)) is None


def _backdate(conn: Connection, digest: str) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    conn.execute(update(blobs).where(blobs.c.digest == digest).values(created_at=old))
    conn.execute(
        update(repository_blobs).where(repository_blobs.c.digest == digest).values(created_at=old)
    )
    conn.execute(delete(gc_seen).where(gc_seen.c.digest == digest))


def test_lock_keys_are_stable_and_signed_64_bit() -> None:
    key = store_locks.lock_key("sha256:" + "f" * 64)
    assert key == int("f" * 15, 16) and 0 < key < 2**63
    assert store_locks.lock_key("sha256:" + "0" * 64) == 0


async def test_a_manifest_whose_identical_orphan_bytes_gc_deletes_is_stored_again(
    world: World,
) -> None:
    """A manifest PUT finds its bytes stored already (an orphan left by a deleted manifest)
    and GC deletes that file before the manifest row commits: the push puts them back, so
    the manifest it answered 201 for can be pulled."""
    from registry.gc.guard import PushGuard
    from registry.service.manifests import ManifestService

    layer = b"a layer"
    layer_digest = await world.blobs.put(layer)
    await world.meta.link_blob("r", str(layer_digest), len(layer))
    empty = b"{}"
    empty_digest = await world.blobs.put(empty)
    await world.meta.link_blob("r", str(empty_digest), len(empty))
    body = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        '"config":{"mediaType":"application/vnd.oci.empty.v1+json",'
        f'"digest":"{empty_digest}","size":2}},'
        '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",'
        f'"digest":"{layer_digest}","size":{len(layer)}}}]}}'
    ).encode()
    orphan = await world.blobs.put(body)  # left by an earlier push, no row names it
    world.age(orphan)
    service = ManifestService(world.meta, world.blobs, True, 4 * 1024 * 1024, PushGuard(world.db))
    put_manifest = world.meta.put_manifest

    async def gc_first(*args: object, **kw: object) -> None:
        result = await world.gc(grace=5.0)  # collects the orphan file meanwhile
        assert result["orphan_files_deleted"] == 1 and not world.file(orphan).exists()
        await put_manifest(*args, **kw)  # type: ignore[arg-type]

    world.meta.put_manifest = gc_first  # type: ignore[method-assign]
    digest, _ = await service.put("r", "v1", body, "application/vnd.oci.image.manifest.v1+json")
    assert digest == orphan
    assert world.file(orphan).read_bytes() == body
    record = await service.resolve("r", "v1")
    service.cache = type(service.cache)()  # read from storage, not the cache
    assert await service.content(record) == body
