"""SQL of storage accounting (issue #7): per repository and for the registry, and what
GC would reclaim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Integer, func, select

from registry.gc.store_doom import kept_digests
from registry.gc.store_mark import (
    KeepRoots,
    MarkOptions,
    drop_temp,
    mark,
    mark_live,
    temp_tables,
)
from registry.meta.tables import blobs, manifest_blobs, manifests, repositories

FAR_FUTURE = 4102444800.0  # 2100-01-01: a cutoff that keeps nothing by age


def usage(conn: Connection, opts: MarkOptions, roots: Sequence[KeepRoots] = ()) -> dict[str, Any]:
    """Per repository: the logical size (every blob and manifest its tags reach, once) and
    the bytes only it holds; for the registry: physical bytes and what GC would reclaim."""
    live, live_blobs = temp_tables()
    drop_temp(conn)
    live.create(conn)
    live_blobs.create(conn)
    try:
        tag_only = MarkOptions(cutoff=FAR_FUTURE, delete_untagged=True)
        mark_live(conn, live, tag_only)
        # (repository, digest, size) reachable from the repository's tags
        per_repo = (
            select(
                manifests.c.repository_id.label("repo"),
                manifest_blobs.c.digest.label("digest"),
            )
            .select_from(
                live.join(manifests, manifests.c.id == live.c.id).join(
                    manifest_blobs, manifest_blobs.c.manifest_id == manifests.c.id
                )
            )
            .union(
                select(manifests.c.repository_id, manifests.c.digest).join(
                    live, live.c.id == manifests.c.id
                )
            )
            .subquery("per_repo")
        )
        sizes = (
            select(blobs.c.digest.label("digest"), blobs.c.size.label("size"))
            .union(
                select(manifests.c.digest, func.max(manifests.c.size)).group_by(manifests.c.digest)
            )
            .subquery("sizes")
        )
        sized = (
            select(per_repo.c.repo, per_repo.c.digest, func.max(sizes.c.size).label("size"))
            .join(sizes, sizes.c.digest == per_repo.c.digest)
            .group_by(per_repo.c.repo, per_repo.c.digest)
            .subquery("sized")
        )
        holders = (
            select(per_repo.c.digest, func.count(func.distinct(per_repo.c.repo)).label("n"))
            .group_by(per_repo.c.digest)
            .subquery("holders")
        )
        query = (
            select(
                repositories.c.name,
                func.coalesce(func.sum(sized.c.size), 0).label("logical"),
                func.coalesce(
                    func.sum(func.coalesce(sized.c.size, 0) * (holders.c.n == 1).cast(Integer)), 0
                ).label("exclusive"),
                func.count(sized.c.digest).label("objects"),
            )
            .select_from(
                repositories.outerjoin(sized, sized.c.repo == repositories.c.id).outerjoin(
                    holders, holders.c.digest == sized.c.digest
                )
            )
            .group_by(repositories.c.name)
            .order_by(repositories.c.name)
        )
        repos = [
            {
                "name": r.name,
                "logical_bytes": int(r.logical),
                "exclusive_bytes": int(r.exclusive),
                "objects": int(r.objects),
            }
            for r in conn.execute(query)
        ]
        blob_bytes = conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0))).scalar_one()
        distinct_manifests = (
            select(manifests.c.digest, func.max(manifests.c.size).label("size"))
            .where(manifests.c.digest.not_in(select(blobs.c.digest)))
            .group_by(manifests.c.digest)
            .subquery()
        )
        manifest_bytes = conn.execute(
            select(func.coalesce(func.sum(distinct_manifests.c.size), 0))
        ).scalar_one()
    finally:
        drop_temp(conn)
    found = mark(conn, opts, roots)
    reclaim = sum(s for _, s in found.blobs)
    gone_ids = frozenset(m.id for m in found.manifests)
    kept = kept_digests(conn, sorted({m.digest for m in found.manifests}), gone_ids)
    reclaim += sum({m.digest: m.size for m in found.manifests if m.digest not in kept}.values())
    return {
        "repositories": repos,
        "registry": {
            "physical_bytes": int(blob_bytes) + int(manifest_bytes),
            "blob_bytes": int(blob_bytes),
            "manifest_bytes": int(manifest_bytes),
            "reclaimable_bytes": reclaim,
            "reclaimable_blobs": len(found.blobs),
            "reclaimable_manifests": len(found.manifests),
        },
    }
