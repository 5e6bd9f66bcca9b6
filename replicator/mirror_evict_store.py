"""Eviction's SQL (issue #16): what the pull-through mirrors cached, a manifest at a time
(the rows of one repository and digest: its digest and the tags naming it) with when it
was last pulled and the blobs it references; and the conditional deletes that evict.

Every delete is conditional on the manifest not having been pulled since the plan was
made (``pulled_at`` only grows), so runs in several processes or nodes at once, and
pulls meanwhile, are safe: a manifest evicted twice is deleted once, one pulled since
is kept (tables in :mod:`replicator.tables`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, case, delete, exists, func, select

from replicator.tables import mirror_manifest_blobs, mirror_manifests


@dataclass
class CachedManifest:
    """A manifest a mirror cached in ``repository``: when any reference to it was last
    pulled, its own size, and the blobs it references (digest -> size; empty with
    ``blobs_known`` false: cached before those were noted)."""

    repository: str
    digest: str
    pulled_at: float
    size: int
    blobs_known: bool
    blobs: dict[str, int] = field(default_factory=dict)


def cached(conn: Connection) -> list[CachedManifest]:
    """Every cached manifest, least recently pulled first."""
    t = mirror_manifests.c
    rows = conn.execute(
        select(
            t.repository,
            t.digest,
            func.max(t.pulled_at).label("pulled_at"),
            func.max(t.size).label("size"),
            func.min(case((t.blobs_known, 1), else_=0)).label("known"),
        ).group_by(t.repository, t.digest)
    ).all()
    found = {
        (r.repository, r.digest): CachedManifest(
            r.repository, r.digest, float(r.pulled_at), int(r.size), bool(r.known)
        )
        for r in rows
    }
    b = mirror_manifest_blobs.c
    for repository, manifest, digest, size in conn.execute(
        select(b.repository, b.manifest, b.digest, b.size)
    ):
        entry = found.get((repository, manifest))
        if entry is not None:
            entry.blobs[digest] = int(size)
    return sorted(found.values(), key=lambda m: (m.pulled_at, m.repository, m.digest))


def evict(conn: Connection, victims: list[tuple[str, str, float]]) -> int:
    """Delete the cached manifests (repository, digest, last pulled at) not pulled since,
    and the note of their blobs once no reference to them is left; how many went."""
    t = mirror_manifests.c
    b = mirror_manifest_blobs.c
    gone = 0
    for repository, digest, pulled_at in victims:
        deleted = conn.execute(
            delete(mirror_manifests).where(
                t.repository == repository, t.digest == digest, t.pulled_at <= pulled_at
            )
        ).rowcount
        if not deleted:  # pulled since, or evicted by another run already
            continue
        left = conn.execute(
            select(exists().where(t.repository == repository, t.digest == digest))
        ).scalar_one()
        if left:
            continue
        conn.execute(
            delete(mirror_manifest_blobs).where(b.repository == repository, b.manifest == digest)
        )
        gone += 1
    return gone
