"""Pull-through mirror state (issue #6): the manifests fetched from upstreams, by tag and
by digest, and when each tag was last checked against its upstream."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, Float, String, Table, delete, insert, select

from registry.meta.db import Database
from registry.meta.tables import metadata, name_type

mirror_manifests = Table(
    "mirror_manifests",
    metadata,
    Column("repository", name_type(255), primary_key=True),
    Column("reference", String(255), primary_key=True),  # a tag, or the digest itself
    Column("digest", String(150), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checked_at", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class MirroredManifest:
    digest: str
    media_type: str
    size: int
    checked_at: float


def _get(conn: Connection, repository: str, reference: str) -> MirroredManifest | None:
    t = mirror_manifests.c
    row = conn.execute(
        select(t.digest, t.media_type, t.size, t.checked_at).where(
            t.repository == repository, t.reference == reference
        )
    ).first()
    return (
        MirroredManifest(row.digest, row.media_type, int(row.size), row.checked_at) if row else None
    )


def _put(
    conn: Connection, repository: str, reference: str, digest: str, media_type: str, size: int
) -> None:
    t = mirror_manifests.c
    conn.execute(
        delete(mirror_manifests).where(t.repository == repository, t.reference == reference)
    )
    conn.execute(
        insert(mirror_manifests).values(
            repository=repository,
            reference=reference,
            digest=digest,
            media_type=media_type,
            size=size,
            checked_at=time.time(),
        )
    )


class MirrorStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, repository: str, reference: str) -> MirroredManifest | None:
        return await self.db.run_read(_get, repository, reference)

    async def put(
        self, repository: str, reference: str, digest: str, media_type: str, size: int
    ) -> None:
        await self.db.run_write(_put, repository, reference, digest, media_type, size)
