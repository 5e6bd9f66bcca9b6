"""Change hooks run inside the transaction of the change they describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection

from registry.meta.changes import Change
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.records import NewManifest
from registry.meta.store import MetadataStore, MissingReferences
from registry.request_context import RequestInfo, current_request

LAYER = "sha256:" + "a" * 64
CONFIG = "sha256:" + "b" * 64
MANIFEST = "sha256:" + "c" * 64


def manifest(blobs: tuple[tuple[str, int], ...]) -> NewManifest:
    return NewManifest(
        digest=MANIFEST,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=300,
        artifact_type=None,
        subject=None,
        annotations=None,
        blobs=blobs,
        children=(),
    )


@pytest.fixture
async def store(tmp_path: Path) -> MetadataStore:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    return MetadataStore(Database(url))


async def test_hooks_see_each_change_with_its_request(store: MetadataStore) -> None:
    seen: list[Change] = []

    def hook(conn: Connection, change: Change) -> None:
        assert conn.in_transaction()
        seen.append(change)

    store.add_hook(hook)
    current_request.set(RequestInfo("req-1", "127.0.0.1:9", "reg", "PUT", "test/1", "alice"))
    await store.link_blob("team/app", LAYER, 10)
    await store.link_blob("team/app", CONFIG, 5)
    await store.link_blob("team/other", LAYER, 10, from_repository="team/app")
    await store.put_manifest("team/app", manifest(((CONFIG, 5), (LAYER, 10))), "v1")
    assert await store.delete_tag("team/app", "v1")
    assert not await store.delete_tag("team/app", "v1")  # nothing deleted: no change
    assert await store.delete_manifest("team/app", MANIFEST)
    await store.db.close()
    summary = [(c.action, c.kind, c.repository, c.digest, c.tag) for c in seen]
    assert summary == [
        ("push", "blob", "team/app", LAYER, None),
        ("push", "blob", "team/app", CONFIG, None),
        ("mount", "blob", "team/other", LAYER, None),
        ("push", "manifest", "team/app", MANIFEST, "v1"),
        ("delete", "tag", "team/app", MANIFEST, "v1"),
        ("delete", "manifest", "team/app", MANIFEST, None),
    ]
    assert seen[2].from_repository == "team/app"
    assert seen[4].size == 300 and seen[5].media_type.endswith("manifest.v1+json")
    assert all(c.request is not None and c.request.actor == "alice" for c in seen)


async def test_a_failing_hook_rolls_the_change_back(store: MetadataStore) -> None:
    def hook(conn: Connection, change: Change) -> None:
        raise RuntimeError("outbox full")

    store.add_hook(hook)
    with pytest.raises(RuntimeError):
        await store.link_blob("team/app", LAYER, 10)
    assert await store.blob_size("team/app", LAYER) is None
    await store.db.close()


async def test_no_hook_call_for_a_refused_manifest(store: MetadataStore) -> None:
    seen: list[Change] = []
    store.add_hook(lambda conn, change: seen.append(change))
    with pytest.raises(MissingReferences):
        await store.put_manifest("team/app", manifest(((LAYER, 10),)), "v1")
    await store.db.close()
    assert seen == []
