"""Repository metadata: blob links, manifests with their references, tags.

Every public method is one transaction. Reads never walk storage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

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


class MissingReferences(Exception):
    """Raised by :meth:`MetadataStore.put_manifest` when referenced content is absent."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown references: {', '.join(missing)}")
        self.missing = missing


def _now() -> datetime:
    return datetime.now(UTC)


async def _insert_ignore(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those that collide with an existing primary/unique key."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        await conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)


async def _repository_id(conn: AsyncConnection, name: str, create: bool) -> int | None:
    query = select(repositories.c.id).where(repositories.c.name == name)
    found: int | None = (await conn.execute(query)).scalar()
    if found is not None or not create:
        return found
    await _insert_ignore(conn, repositories, [{"name": name, "created_at": _now()}])
    created: int = (await conn.execute(query)).scalar_one()
    return created


def _record(row: Any) -> ManifestRecord:
    return ManifestRecord(row.digest, row.media_type, row.size, row.artifact_type, row.annotations)


class MetadataStore:
    """All reads and writes of repository metadata."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- blobs -------------------------------------------------------------

    async def link_blob(self, repository: str, digest: str, size: int) -> None:
        """Record that ``digest`` (already in storage) is part of ``repository``."""
        async with self.db.write() as conn:
            await _insert_ignore(
                conn, blobs, [{"digest": digest, "size": size, "created_at": _now()}]
            )
            repo_id = await _repository_id(conn, repository, create=True)
            await _insert_ignore(
                conn,
                repository_blobs,
                [{"repository_id": repo_id, "digest": digest, "created_at": _now()}],
            )

    async def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob linked to ``repository``, or None."""
        query = (
            select(blobs.c.size)
            .select_from(
                repositories.join(
                    repository_blobs, repository_blobs.c.repository_id == repositories.c.id
                ).join(blobs, blobs.c.digest == repository_blobs.c.digest)
            )
            .where(repositories.c.name == repository, repository_blobs.c.digest == digest)
        )
        async with self.db.read() as conn:
            size: int | None = (await conn.execute(query)).scalar()
            return size

    async def global_blob_size(self, digest: str) -> int | None:
        """The size of a blob known in any repository, or None."""
        async with self.db.read() as conn:
            size: int | None = (
                await conn.execute(select(blobs.c.size).where(blobs.c.digest == digest))
            ).scalar()
            return size

    async def unlink_blob(self, repository: str, digest: str) -> bool:
        """Remove a blob's link to ``repository``; False if it was not linked."""
        async with self.db.write() as conn:
            repo_id = await _repository_id(conn, repository, create=False)
            if repo_id is None:
                return False
            result = await conn.execute(
                delete(repository_blobs).where(
                    repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest == digest
                )
            )
            return bool(result.rowcount)

    # -- manifests ---------------------------------------------------------

    async def put_manifest(self, repository: str, new: NewManifest, tag: str | None) -> None:
        """Store a manifest, its references and (optionally) a tag in one transaction.

        Raises :class:`MissingReferences` when a blob is not linked to the repository
        or a child manifest is not in it; nothing is written then.
        """
        async with self.db.write() as conn:
            repo_id = await _repository_id(conn, repository, create=True)
            assert repo_id is not None
            await self._check_references(conn, repo_id, new)
            await _insert_ignore(
                conn,
                manifests,
                [
                    {
                        "repository_id": repo_id,
                        "digest": new.digest,
                        "media_type": new.media_type,
                        "artifact_type": new.artifact_type,
                        "size": new.size,
                        "subject_digest": new.subject,
                        "annotations": new.annotations,
                        "created_at": _now(),
                    }
                ],
            )
            manifest_id = (
                await conn.execute(
                    select(manifests.c.id).where(
                        manifests.c.repository_id == repo_id, manifests.c.digest == new.digest
                    )
                )
            ).scalar_one()
            await _insert_ignore(
                conn,
                manifest_blobs,
                [{"manifest_id": manifest_id, "digest": d} for d in {d for d, _ in new.blobs}],
            )
            await _insert_ignore(
                conn,
                manifest_children,
                [{"parent_id": manifest_id, "child_digest": d} for d in set(new.children)],
            )
            if tag is not None:
                await self._set_tag(conn, repo_id, tag, manifest_id)

    async def _check_references(
        self, conn: AsyncConnection, repo_id: int, new: NewManifest
    ) -> None:
        missing: list[str] = []
        wanted_blobs = dict(new.blobs)
        if wanted_blobs:
            rows = await conn.execute(
                select(blobs.c.digest, blobs.c.size)
                .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
                .where(
                    repository_blobs.c.repository_id == repo_id,
                    blobs.c.digest.in_(list(wanted_blobs)),
                )
            )
            found = {r.digest: r.size for r in rows}
            missing += [d for d in wanted_blobs if d not in found]
        if new.children:
            rows = await conn.execute(
                select(manifests.c.digest).where(
                    manifests.c.repository_id == repo_id,
                    manifests.c.digest.in_(list(set(new.children))),
                )
            )
            found_children = {r.digest for r in rows}
            missing += [d for d in dict.fromkeys(new.children) if d not in found_children]
        if missing:
            raise MissingReferences(missing)

    async def _set_tag(
        self, conn: AsyncConnection, repo_id: int, tag: str, manifest_id: int
    ) -> None:
        values = {
            "repository_id": repo_id,
            "name": tag,
            "manifest_id": manifest_id,
            "updated_at": _now(),
        }
        if conn.dialect.name == "postgresql":
            stmt: Any = postgresql.insert(tags).values(values)
        else:
            stmt = sqlite.insert(tags).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[tags.c.repository_id, tags.c.name],
            set_={"manifest_id": manifest_id, "updated_at": values["updated_at"]},
        )
        await conn.execute(stmt)

    async def resolve(
        self, repository: str, *, tag: str | None = None, digest: str | None = None
    ) -> ManifestRecord | None:
        """The manifest a tag points at, or the manifest with a digest, in ``repository``."""
        cols = (
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.size,
            manifests.c.artifact_type,
            manifests.c.annotations,
        )
        base = repositories.join(manifests, manifests.c.repository_id == repositories.c.id)
        if tag is not None:
            query = (
                select(*cols)
                .select_from(base.join(tags, tags.c.manifest_id == manifests.c.id))
                .where(repositories.c.name == repository, tags.c.name == tag)
            )
        else:
            query = (
                select(*cols)
                .select_from(base)
                .where(repositories.c.name == repository, manifests.c.digest == digest)
            )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest from ``repository`` with every tag pointing at it."""
        async with self.db.write() as conn:
            repo_id = await _repository_id(conn, repository, create=False)
            if repo_id is None:
                return False
            manifest_id = (
                await conn.execute(
                    select(manifests.c.id).where(
                        manifests.c.repository_id == repo_id, manifests.c.digest == digest
                    )
                )
            ).scalar()
            if manifest_id is None:
                return False
            await conn.execute(delete(tags).where(tags.c.manifest_id == manifest_id))
            await conn.execute(
                delete(manifest_blobs).where(manifest_blobs.c.manifest_id == manifest_id)
            )
            await conn.execute(
                delete(manifest_children).where(manifest_children.c.parent_id == manifest_id)
            )
            await conn.execute(delete(manifests).where(manifests.c.id == manifest_id))
            return True

    async def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove one tag (the manifest stays)."""
        async with self.db.write() as conn:
            repo_id = await _repository_id(conn, repository, create=False)
            if repo_id is None:
                return False
            result = await conn.execute(
                delete(tags).where(tags.c.repository_id == repo_id, tags.c.name == tag)
            )
            return bool(result.rowcount)

    # -- listings ----------------------------------------------------------

    async def repository_exists(self, repository: str) -> bool:
        async with self.db.read() as conn:
            return await _repository_id(conn, repository, create=False) is not None

    async def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str] | None:
        """Tags of ``repository`` in lexical order after ``last``; None if it is unknown."""
        async with self.db.read() as conn:
            repo_id = await _repository_id(conn, repository, create=False)
            if repo_id is None:
                return None
            query = select(tags.c.name).where(tags.c.repository_id == repo_id).order_by(tags.c.name)
            if last:
                query = query.where(tags.c.name > last)
            if limit is not None:
                query = query.limit(limit)
            return list((await conn.execute(query)).scalars())

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        """Names of repositories holding at least one manifest, in order, after ``last``."""
        has_manifest = exists().where(manifests.c.repository_id == repositories.c.id)
        query = select(repositories.c.name).where(has_manifest).order_by(repositories.c.name)
        if last:
            query = query.where(repositories.c.name > last)
        if limit is not None:
            query = query.limit(limit)
        async with self.db.read() as conn:
            return list((await conn.execute(query)).scalars())

    async def referrers(
        self, repository: str, subject: str, artifact_type: str | None
    ) -> list[ManifestRecord]:
        """Manifests of ``repository`` whose subject is ``subject``."""
        query = (
            select(
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.artifact_type,
                manifests.c.annotations,
            )
            .select_from(
                repositories.join(manifests, manifests.c.repository_id == repositories.c.id)
            )
            .where(repositories.c.name == repository, manifests.c.subject_digest == subject)
            .order_by(manifests.c.digest)
        )
        if artifact_type is not None:
            query = query.where(manifests.c.artifact_type == artifact_type)
        async with self.db.read() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def counts(self) -> dict[str, int]:
        """Row counts, for the health and metrics endpoints."""
        async with self.db.read() as conn:
            out: dict[str, int] = {}
            for name, table in (
                ("repositories", repositories),
                ("manifests", manifests),
                ("blobs", blobs),
            ):
                out[name] = (
                    await conn.execute(select(func.count()).select_from(table))
                ).scalar_one()
            return out
