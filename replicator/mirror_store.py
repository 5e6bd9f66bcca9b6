"""Pull-through mirror state's SQL (issue #6): the manifests fetched from upstreams, by tag
and by digest, and when each tag was last checked against its upstream; and the leases of
the blob fetches under way, so that every process of every node sharing the database
fetches a blob from upstream once (tables in :mod:`replicator.tables`).

Times are epoch seconds (floats), compared across nodes as the replication leases are."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.sql import Select

from registry.meta import lease
from registry.meta.db import Database
from registry.meta.lease import LeaseTable
from registry.meta.tables import repositories
from registry.periodic import Clock
from replicator.tables import mirror_fetches, mirror_manifests


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


@dataclass(frozen=True, slots=True)
class FetchState:
    """A fetch lease as stored: ``live`` unless it expired (its holder died or hung)."""

    holder: str
    upload_id: str | None
    written: int
    size: int
    live: bool


# A blob fetch's lease (:mod:`registry.meta.lease`): not reentrant (each fetch has its
# own holder id, and a live row means "under way" whoever asks); ended by deleting it.
FETCH_LEASES = LeaseTable(mirror_fetches, ("upstream", "digest"))


def _fetch_key(upstream: str, digest: str) -> dict[str, str]:
    return {"upstream": upstream[:255], "digest": digest}


def _take_fetch(
    conn: Connection, upstream: str, digest: str, holder: str, now: float, ttl: float, size: int
) -> bool:
    """Take the fetch of ``digest`` unless a live lease is held (by anyone, ``holder``
    included), with no upload and no bytes written yet."""
    values = {"upload_id": None, "written": 0, "size": size, "started_at": now}
    key = _fetch_key(upstream, digest)
    return lease.take(conn, FETCH_LEASES, key, holder, now, ttl, values, reentrant=False)


def _fetch_state(conn: Connection, upstream: str, digest: str, now: float) -> FetchState | None:
    t = mirror_fetches.c
    row = conn.execute(
        select(t.holder, t.upload_id, t.written, t.size, t.expires_at).where(
            FETCH_LEASES.where(_fetch_key(upstream, digest))
        )
    ).first()
    if row is None:
        return None
    live = row.expires_at > now
    return FetchState(row.holder, row.upload_id, int(row.written), int(row.size), live)


class FetchLeases:
    """Blob fetch leases; each method one transaction. ``clock``: epoch seconds,
    compared across nodes."""

    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self.db = db
        self.clock = clock

    async def take(self, upstream: str, digest: str, holder: str, ttl: float, size: int) -> bool:
        return await self.db.run_write(
            _take_fetch, upstream, digest, holder, self.clock(), ttl, size
        )

    async def renew(
        self,
        upstream: str,
        digest: str,
        holder: str,
        ttl: float,
        upload_id: str | None,
        written: int,
    ) -> bool:
        """Extend the lease and note the progress; False if the lease is no longer ours."""
        progress = {"upload_id": upload_id, "written": written}
        key = _fetch_key(upstream, digest)
        return await self.db.run_write(
            lease.renew, FETCH_LEASES, key, holder, self.clock(), ttl, progress
        )

    async def end(self, upstream: str, digest: str, holder: str) -> None:
        key = _fetch_key(upstream, digest)
        await self.db.run_write(lease.release, FETCH_LEASES, key, holder)

    async def state(self, upstream: str, digest: str) -> FetchState | None:
        return await self.db.run_read(_fetch_state, upstream, digest, self.clock())


def mirrored_repositories(conn: Connection, limit: int | None, last: str | None) -> list[str]:
    """Repositories holding a mirror's manifests, in order, after ``last`` (the catalog
    lists them with the repositories holding manifest rows)."""
    t = mirror_manifests.c
    query = select(t.repository).distinct().order_by(t.repository)
    if last:
        query = query.where(t.repository > last)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


class MirrorRoots:
    """What garbage collection keeps for the pull-through mirror (GC's ``KeepRoots``,
    given to it by the registry and ``wharf gc``): the mirror keeps no manifest rows or
    tags, so nothing it cached is reachable from tags; it stays, so that cached images
    are served while the upstream is down (those of a mirror configured before, too)."""

    name = "pull-through mirror"

    def repositories(self) -> Select[Any]:
        """Repositories holding a mirror's cache, kept whole: their links and blobs."""
        names = select(mirror_manifests.c.repository)
        return select(repositories.c.id).where(repositories.c.name.in_(names))

    def digests(self) -> Select[Any]:
        """The bytes of the manifests a mirror cached (no manifest row names them)."""
        return select(mirror_manifests.c.digest)
