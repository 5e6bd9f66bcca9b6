"""Repository metadata: blob links, manifests with their references, tags.

The SQL lives in plain functions of a synchronous ``Connection``; each public method of
:class:`MetadataStore` runs one of them as one transaction through :class:`Database`.
Reads never walk storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, exists, func, select

from registry.meta import direct, quarantine, uploads
from registry.meta import queries as q
from registry.meta.changes import Change, ChangeHook
from registry.meta.db import Database
from registry.meta.records import ManifestRecord, NewManifest
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from registry.request_context import current_request


class MissingReferences(Exception):
    """Raised by :meth:`MetadataStore.put_manifest` when referenced content is absent."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown references: {', '.join(missing)}")
        self.missing = missing


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those that collide with an existing primary/unique key."""
    if rows:
        direct.execute_many(conn, q.insert_ignore(table, conn.dialect.name), rows)


def _repository_id(conn: Connection, name: str, create: bool = False) -> int | None:
    found: int | None = direct.scalar(conn, q.repository_id(), {"name": name})
    if found is not None or not create:
        return found
    _insert_ignore(conn, repositories, [{"name": name, "created_at": _now()}])
    created: int = direct.scalar(conn, q.repository_id(), {"name": name})
    return created


Hooks = Sequence[ChangeHook]
# (conn, limit, last) -> more repository names for the catalog, in order, after ``last``
CatalogSource = Callable[[Connection, int | None, str | None], list[str]]


def _notify(conn: Connection, hooks: Hooks, change: Change) -> None:
    for hook in hooks:
        hook(conn, change)


def _record(row: Any) -> ManifestRecord:
    return ManifestRecord(row.digest, row.media_type, row.size, row.artifact_type, row.annotations)


# -- blobs -----------------------------------------------------------------


def _link_blob(
    conn: Connection,
    hooks: Hooks,
    change: Change,
    ended_upload: str | None = None,
    fresh: bool = False,
) -> None:
    if ended_upload is not None:
        uploads.forget(conn, [ended_upload])
    digest = change.digest
    if fresh:  # verified bytes were just moved over the blob's path: good again (#18)
        quarantine.release(conn, digest)
    _insert_ignore(conn, blobs, [{"digest": digest, "size": change.size, "created_at": _now()}])
    repo_id = _repository_id(conn, change.repository, create=True)
    _insert_ignore(
        conn,
        repository_blobs,
        [{"repository_id": repo_id, "digest": digest, "created_at": _now()}],
    )
    _notify(conn, hooks, change)


def _blob_size(conn: Connection, repository: str, digest: str) -> int | None:
    params = {"name": repository, "digest": digest}
    size: int | None = conn.execute(q.blob_size_in_repository(), params).scalar()
    return size


def _global_blob_size(conn: Connection, digest: str) -> int | None:
    size: int | None = conn.execute(select(blobs.c.size).where(blobs.c.digest == digest)).scalar()
    return size


def _unlink_blob(conn: Connection, hooks: Hooks, change: Change) -> bool:
    repo_id = _repository_id(conn, change.repository)
    if repo_id is None:
        return False
    result = conn.execute(
        delete(repository_blobs).where(
            repository_blobs.c.repository_id == repo_id,
            repository_blobs.c.digest == change.digest,
        )
    )
    if not result.rowcount:
        return False
    _notify(conn, hooks, change)
    return True


# -- manifests -------------------------------------------------------------


def _present(conn: Connection, many: Any, one: Any, repo_id: int, digests: list[str]) -> set[str]:
    """Which of ``digests`` ``many`` (an ``IN`` query) finds; on the SQLite writer, one
    direct lookup each with ``one`` (cheaper there than an expanding ``IN``)."""
    if direct.available(conn):
        return {
            d
            for d in digests
            if direct.first(conn, one, {"repository_id": repo_id, "digest": d}) is not None
        }
    return set(conn.execute(many, {"repository_id": repo_id, "digests": digests}).scalars())


def check_references(conn: Connection, repo_id: int, new: NewManifest) -> None:
    """Raise :class:`MissingReferences` for blobs or children of ``new`` not in the repository."""
    missing: list[str] = []
    wanted_blobs = list(dict(new.blobs))
    if wanted_blobs:
        found = _present(conn, q.linked_blobs(), q.linked_blob(), repo_id, wanted_blobs)
        missing += [d for d in wanted_blobs if d not in found]
    children = list(dict.fromkeys(new.children))
    if children:
        found = _present(conn, q.present_manifests(), q.present_manifest(), repo_id, children)
        missing += [d for d in children if d not in found]
    if missing:
        raise MissingReferences(missing)


def _set_tag(conn: Connection, repo_id: int, tag: str, manifest_id: int) -> str | None:
    """Point ``tag`` at the manifest; the digest it pointed at before (None: a new tag)."""
    before = direct.scalar(conn, q.tag_target(), {"repository_id": repo_id, "name": tag})
    params = {
        "repository_id": repo_id,
        "name": tag,
        "manifest_id": manifest_id,
        "updated_at": _now(),
    }
    direct.execute(conn, q.set_tag(conn.dialect.name), params)
    return None if before is None else str(before)


def _put_manifest(conn: Connection, hooks: Hooks, change: Change, guards: Hooks = ()) -> bool:
    repository, new, tag = change.repository, change.manifest, change.tag
    assert new is not None
    _notify(conn, guards, change)  # before any row is written: they see the old state
    repo_id = _repository_id(conn, repository, create=True)
    assert repo_id is not None
    check_references(conn, repo_id, new)
    row = {
        "repository_id": repo_id,
        "digest": new.digest,
        "media_type": new.media_type,
        "artifact_type": new.artifact_type,
        "size": new.size,
        "subject_digest": new.subject,
        "annotations": new.annotations,
        "created_at": _now(),
    }
    manifest_id = direct.scalar(conn, q.upsert_manifest(conn.dialect.name), row)
    assert manifest_id is not None
    _insert_ignore(
        conn,
        manifest_blobs,
        [{"manifest_id": manifest_id, "digest": d} for d in dict(new.blobs)],
    )
    _insert_ignore(
        conn,
        manifest_children,
        [{"parent_id": manifest_id, "child_digest": d} for d in dict.fromkeys(new.children)],
    )
    if tag is not None:
        before = _set_tag(conn, repo_id, tag, manifest_id)
        if before is not None and before != new.digest:  # the push moved the tag
            change = replace(change, details={**change.details, "retagged_from": before})
    _notify(conn, hooks, replace(change, repository_id=repo_id, manifest_id=manifest_id))
    return quarantine.is_quarantined(conn, new.digest)


def _resolve(
    conn: Connection, repository: str, tag: str | None, digest: str | None
) -> ManifestRecord | None:
    params: dict[str, str | None] = {"name": repository, "tag": tag, "digest": digest}
    query = q.manifest_by_tag() if tag is not None else q.manifest_by_digest()
    row = conn.execute(query, params).first()
    return _record(row) if row is not None else None


def _delete_manifest(conn: Connection, hooks: Hooks, change: Change) -> bool:
    repo_id = _repository_id(conn, change.repository)
    if repo_id is None:
        return False
    params = {"repository_id": repo_id, "digest": change.digest}
    manifest_id = conn.execute(q.manifest_id_locked(), params).scalar()
    if manifest_id is None:
        return False
    row = conn.execute(
        select(manifests.c.media_type, manifests.c.size).where(manifests.c.id == manifest_id)
    ).first()
    # the tags it loses, for the hooks (events: the reference sends one delete per tag)
    untagged = list(
        conn.execute(select(tags.c.name).where(tags.c.manifest_id == manifest_id)).scalars()
    )
    conn.execute(delete(tags).where(tags.c.manifest_id == manifest_id))
    conn.execute(delete(manifest_blobs).where(manifest_blobs.c.manifest_id == manifest_id))
    conn.execute(delete(manifest_children).where(manifest_children.c.parent_id == manifest_id))
    # On PostgreSQL two nodes may both have found the manifest: the second DELETE waits
    # for the first to commit and then removes nothing, and that delete answers 404.
    result = conn.execute(delete(manifests).where(manifests.c.id == manifest_id))
    if not result.rowcount:
        return False
    change = replace(change, details={**change.details, "untagged": untagged})
    if row is not None:
        change = replace(change, media_type=row.media_type, size=row.size)
    _notify(conn, hooks, change)
    return True


def _delete_tag(conn: Connection, hooks: Hooks, change: Change) -> bool:
    repo_id = _repository_id(conn, change.repository)
    if repo_id is None:
        return False
    where = (tags.c.repository_id == repo_id, tags.c.name == change.tag)
    row = conn.execute(
        select(manifests.c.digest, manifests.c.media_type, manifests.c.size)
        .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
        .where(*where)
    ).first()
    result = conn.execute(delete(tags).where(*where))
    if not result.rowcount:
        return False
    if row is not None:
        change = replace(change, digest=row.digest, media_type=row.media_type, size=row.size)
    _notify(conn, hooks, change)
    return True


# -- listings --------------------------------------------------------------


def _list_tags(
    conn: Connection, repository: str, limit: int | None, last: str | None
) -> list[str] | None:
    params = {
        "name": repository,
        "last": last or "",
        "limit": q.NO_LIMIT if limit is None else limit,
    }
    names = list(conn.execute(q.tag_page(), params).scalars())
    if not names and _repository_id(conn, repository) is None:
        return None
    return names


def _catalog(
    conn: Connection, sources: Sequence[CatalogSource], limit: int | None, last: str | None
) -> list[str]:
    has_manifest = exists().where(manifests.c.repository_id == repositories.c.id)
    query = select(repositories.c.name).where(has_manifest).order_by(repositories.c.name)
    if last:
        query = query.where(repositories.c.name > last)
    if limit is not None:
        query = query.limit(limit)
    names = list(conn.execute(query).scalars())
    # repositories a feature keeps without manifest rows (a pull-through mirror's, issue
    # #6): each source's page merged, the first ``limit`` of them
    for source in sources:
        extra = source(conn, limit, last)
        if extra:
            names = sorted(set(names) | set(extra))[:limit]
    return names


def _referrers(
    conn: Connection, repository: str, subject: str, artifact_type: str | None
) -> list[ManifestRecord]:
    query = (
        select(*q.MANIFEST_COLUMNS)
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(repositories.c.name == repository, manifests.c.subject_digest == subject)
        .order_by(manifests.c.digest)
    )
    if artifact_type is not None:
        query = query.where(manifests.c.artifact_type == artifact_type)
    return [_record(r) for r in conn.execute(query)]


def _counts(conn: Connection) -> dict[str, int]:
    tables = (("repositories", repositories), ("manifests", manifests), ("blobs", blobs))
    return {
        name: conn.execute(select(func.count()).select_from(table)).scalar_one()
        for name, table in tables
    }


class MetadataStore:
    """All reads and writes of repository metadata, each one transaction."""

    def __init__(self, db: Database, hooks: Sequence[ChangeHook] = ()) -> None:
        self.db = db
        self.hooks: list[ChangeHook] = list(hooks)
        self.guards: list[ChangeHook] = []
        self.catalog_sources: list[CatalogSource] = []

    def add_hook(self, hook: ChangeHook) -> None:
        """Call ``hook`` inside every content-changing transaction from now on."""
        self.hooks.append(hook)

    def add_guard(self, guard: ChangeHook) -> None:
        """Call ``guard`` at the start of every manifest push's transaction from now on,
        before its rows are written (the tag still points where it did): it refuses the
        push by raising (an OCI error), which rolls the transaction back."""
        self.guards.append(guard)

    def add_catalog_source(self, source: CatalogSource) -> None:
        """List the names ``source`` returns in the catalog too (repositories a feature
        keeps without manifest rows), merged in order with the others."""
        self.catalog_sources.append(source)

    async def link_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        from_repository: str | None = None,
        ended_upload: str | None = None,
        fresh: bool = False,
    ) -> None:
        """Record that ``digest`` (already in storage) is part of ``repository``: a blob
        pushed, or mounted ``from_repository``; ``ended_upload``: the counted upload
        session it came from, whose row goes in the same transaction; ``fresh``: its
        bytes were just written and verified (an upload's commit), which lifts a
        quarantine of the digest (``registry/meta/quarantine.py``)."""
        change = Change(
            action="mount" if from_repository else "push",
            kind="blob",
            repository=repository,
            digest=digest,
            size=size,
            from_repository=from_repository,
            request=current_request.get(),
        )
        await self.db.run_write(_link_blob, tuple(self.hooks), change, ended_upload, fresh)

    async def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob linked to ``repository``, or None."""
        return await self.db.run_read(_blob_size, repository, digest)

    async def global_blob_size(self, digest: str) -> int | None:
        """The size of a blob known in any repository, or None."""
        return await self.db.run_read(_global_blob_size, digest)

    async def unlink_blob(self, repository: str, digest: str) -> bool:
        """Remove a blob's link to ``repository``; False if it was not linked."""
        change = Change(
            action="delete",
            kind="blob",
            repository=repository,
            digest=digest,
            request=current_request.get(),
        )
        return await self.db.run_write(_unlink_blob, tuple(self.hooks), change)

    async def put_manifest(
        self,
        repository: str,
        new: NewManifest,
        tag: str | None,
        details: dict[str, object] | None = None,
    ) -> bool:
        """Store a manifest, its references and (optionally) a tag in one transaction.

        Raises :class:`MissingReferences` when a blob is not linked to the repository
        or a child manifest is not in it; nothing is written then. ``details`` are
        passed to the change hooks (facts read from the image, for the search index).
        Returns whether the manifest's digest is in quarantine (its stored bytes found
        bad: the caller writes them again, then :meth:`release`).
        """
        change = Change(
            action="push",
            kind="manifest",
            repository=repository,
            digest=new.digest,
            media_type=new.media_type,
            size=new.size,
            tag=tag,
            manifest=new,
            request=current_request.get(),
            details=details or {},
        )
        quarantined: bool = await self.db.run_write(
            _put_manifest, tuple(self.hooks), change, tuple(self.guards)
        )
        return quarantined

    async def quarantined(self, digest: str) -> bool:
        """Are the stored bytes of ``digest`` in quarantine (found bad by a scrub)?"""
        found: bool = await self.db.run_read(quarantine.is_quarantined, digest)
        return found

    async def release(self, digest: str) -> bool:
        """Lift the quarantine of ``digest``, whose bytes were written again; True if it
        was in quarantine."""
        released: bool = await self.db.run_write(quarantine.release, digest)
        return released

    async def resolve(
        self, repository: str, *, tag: str | None = None, digest: str | None = None
    ) -> ManifestRecord | None:
        """The manifest a tag points at, or the manifest with a digest, in ``repository``."""
        return await self.db.run_read(_resolve, repository, tag, digest)

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest from ``repository`` with every tag pointing at it."""
        change = Change(
            action="delete",
            kind="manifest",
            repository=repository,
            digest=digest,
            request=current_request.get(),
        )
        return await self.db.run_write(_delete_manifest, tuple(self.hooks), change)

    async def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag (the manifest stays)."""
        change = Change(
            action="delete",
            kind="tag",
            repository=repository,
            digest="",
            tag=tag,
            request=current_request.get(),
        )
        return await self.db.run_write(_delete_tag, tuple(self.hooks), change)

    async def repository_exists(self, repository: str) -> bool:
        return await self.db.run_read(_repository_id, repository) is not None

    async def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str] | None:
        """Tags of ``repository`` in lexical order after ``last``; None if it is unknown."""
        return await self.db.run_read(_list_tags, repository, limit, last)

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        """Names of repositories holding at least one manifest (or named by a catalog
        source), in order, after ``last``."""
        return await self.db.run_read(_catalog, tuple(self.catalog_sources), limit, last)

    async def referrers(
        self, repository: str, subject: str, artifact_type: str | None
    ) -> list[ManifestRecord]:
        """Manifests of ``repository`` whose subject is ``subject``."""
        return await self.db.run_read(_referrers, repository, subject, artifact_type)

    async def counts(self) -> dict[str, int]:
        """Row counts, for the health and metrics endpoints."""
        return await self.db.run_read(_counts)
