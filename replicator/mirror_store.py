"""Pull-through mirror state's SQL (issue #6): the manifests fetched from upstreams, by tag
and by digest, and when each tag was last checked against its upstream; and the leases of
the blob fetches under way, so that every process of every node sharing the database
fetches a blob from upstream once (tables in :mod:`replicator.tables`). Eviction's SQL
(issue #16) is in :mod:`replicator.mirror_evict_store`.

Times are epoch seconds (floats), compared across nodes as the replication leases are."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, union, update
from sqlalchemy.sql import Select

from registry.meta import lease
from registry.meta.db import Database
from registry.meta.lease import LeaseTable
from registry.meta.tables import repositories
from registry.periodic import Clock
from replicator.tables import mirror_fetches, mirror_manifest_blobs, mirror_manifests


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


def _fetched(
    conn: Connection,
    repository: str,
    references: list[str],
    digest: str,
    media_type: str,
    size: int,
    blobs: list[tuple[str, int]] | None,
) -> None:
    """Note a manifest just fetched from upstream under ``references`` (its digest, and a
    tag), pulled now, with the blobs it references (``None``: not known)."""
    t = mirror_manifests.c
    now = time.time()
    for reference in references:
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
                checked_at=now,
                pulled_at=now,
                blobs_known=blobs is not None,
            )
        )
    if blobs is None:
        return
    b = mirror_manifest_blobs.c
    conn.execute(
        delete(mirror_manifest_blobs).where(b.repository == repository, b.manifest == digest)
    )
    sizes = dict(blobs)  # a blob referenced twice is noted once
    if sizes:
        conn.execute(
            insert(mirror_manifest_blobs),
            [
                {"repository": repository, "manifest": digest, "digest": d, "size": n}
                for d, n in sizes.items()
            ],
        )


def _checked(conn: Connection, repository: str, reference: str) -> None:
    """A cached tag checked against its upstream now (or not reachable: checked again
    after another ttl)."""
    t = mirror_manifests.c
    conn.execute(
        update(mirror_manifests)
        .where(t.repository == repository, t.reference == reference)
        .values(checked_at=time.time())
    )


def _pulled(conn: Connection, pulls: list[tuple[str, str, float]]) -> None:
    """(repository, manifest digest, when): every reference to it was pulled then (the
    tag and the digest of a manifest go together)."""
    t = mirror_manifests.c
    for repository, digest, at in pulls:
        conn.execute(
            update(mirror_manifests)
            .where(t.repository == repository, t.digest == digest, t.pulled_at < at)
            .values(pulled_at=at)
        )


class MirrorStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, repository: str, reference: str) -> MirroredManifest | None:
        return await self.db.run_read(_get, repository, reference)

    async def fetched(
        self,
        repository: str,
        references: list[str],
        digest: str,
        media_type: str,
        size: int,
        blobs: list[tuple[str, int]] | None,
    ) -> None:
        await self.db.run_write(_fetched, repository, references, digest, media_type, size, blobs)

    async def checked(self, repository: str, reference: str) -> None:
        await self.db.run_write(_checked, repository, reference)

    async def pulled(self, pulls: list[tuple[str, str, float]]) -> None:
        await self.db.run_write(_pulled, pulls)


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
    are served while the upstream is down (those of a mirror configured before, too),
    until eviction (issue #16) removes its ``mirror_manifests`` rows.

    What stays: the bytes of every cached manifest and of the blobs each references
    (``mirror_manifest_blobs``); a repository holding a manifest cached before those were
    noted (``blobs_known`` false) is kept whole, links and blobs, as before."""

    name = "pull-through mirror"

    def repositories(self) -> Select[Any]:
        """Repositories holding a manifest cached with its blobs unknown, kept whole."""
        t = mirror_manifests.c
        names = select(t.repository).where(t.blobs_known.is_(False))
        return select(repositories.c.id).where(repositories.c.name.in_(names))

    def digests(self) -> Select[Any]:
        """The bytes of the manifests a mirror cached (no manifest row names them) and of
        the blobs they reference."""
        both = union(
            select(mirror_manifests.c.digest.label("digest")),
            select(mirror_manifest_blobs.c.digest.label("digest")),
        ).subquery()
        return select(both.c.digest)
