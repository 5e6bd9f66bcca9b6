"""The browse endpoints' SQL: one manifest with what the image page shows, a
repository's counts, the index's row counts for the admin page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from registry.meta import queries as q
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    tags,
)
from registry.search.store import platforms_of, utc
from registry.search.tables import search_facts, search_labels, search_tags


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """One manifest with what the image page shows."""

    repository: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str]
    pushed_at: datetime
    subject: str | None
    tags: list[str]
    platforms: list[str]
    config_digest: str | None
    total_size: int | None
    detail: dict[str, Any]
    blobs: list[tuple[str, int]]  # digest, size: every blob it references (no order)
    referrers: list[dict[str, Any]]
    parents: list[str]  # digests of indexes in this repository that list it


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def manifest_info(
    conn: Connection, repository: str, tag: str | None, digest: str | None
) -> ManifestInfo | None:
    """The manifest a tag or digest names in ``repository``, with its facts; None if absent."""
    query = (
        select(manifests, repositories.c.name.label("repository"))
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(repositories.c.name == repository)
    )
    if tag is not None:
        query = query.join(tags, tags.c.manifest_id == manifests.c.id).where(tags.c.name == tag)
    else:
        query = query.where(manifests.c.digest == digest)
    row = conn.execute(query).first()
    if row is None:
        return None
    mid = row.id
    tag_names = list(
        conn.execute(
            select(tags.c.name).where(tags.c.manifest_id == mid).order_by(tags.c.name)
        ).scalars()
    )
    facts = conn.execute(select(search_facts).where(search_facts.c.manifest_id == mid)).first()
    blob_rows = conn.execute(
        select(manifest_blobs.c.digest, func.coalesce(blobs.c.size, 0))
        .select_from(manifest_blobs.outerjoin(blobs, blobs.c.digest == manifest_blobs.c.digest))
        .where(manifest_blobs.c.manifest_id == mid)
    ).all()
    referrer_rows = conn.execute(
        select(
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.artifact_type,
            manifests.c.size,
            manifests.c.annotations,
            manifests.c.created_at,
        )
        .where(
            manifests.c.repository_id == row.repository_id, manifests.c.subject_digest == row.digest
        )
        .order_by(manifests.c.created_at, manifests.c.digest)
    ).all()
    parents = list(
        conn.execute(
            select(manifests.c.digest)
            .select_from(
                manifest_children.join(manifests, manifests.c.id == manifest_children.c.parent_id)
            )
            .where(
                manifests.c.repository_id == row.repository_id,
                manifest_children.c.child_digest == row.digest,
            )
            .order_by(manifests.c.digest)
        ).scalars()
    )
    return ManifestInfo(
        repository=row.repository,
        digest=row.digest,
        media_type=row.media_type,
        artifact_type=row.artifact_type,
        size=row.size,
        annotations=_json(row.annotations),
        pushed_at=row.created_at,
        subject=row.subject_digest,
        tags=tag_names,
        platforms=platforms_of(conn, [mid]).get(mid, []),
        config_digest=facts.config_digest if facts is not None else None,
        total_size=facts.total_size if facts is not None else None,
        detail=_json(facts.detail) if facts is not None else {},
        blobs=[(r[0], int(r[1])) for r in blob_rows],
        referrers=[
            {
                "digest": r[0],
                "mediaType": r[1],
                "artifactType": r[2],
                "size": r[3],
                "annotations": _json(r[4]),
                "pushed": utc(r[5]).isoformat(),
            }
            for r in referrer_rows
        ],
        parents=parents,
    )


def repository_summary(conn: Connection, repository: str) -> dict[str, int] | None:
    """Counts for a repository page; None if there is no such repository."""
    repo_id = conn.execute(q.repository_id(), {"name": repository}).scalar()
    if repo_id is None:
        return None
    n_tags = conn.execute(
        select(func.count()).select_from(tags).where(tags.c.repository_id == repo_id)
    ).scalar_one()
    n_manifests = conn.execute(
        select(func.count()).select_from(manifests).where(manifests.c.repository_id == repo_id)
    ).scalar_one()
    return {"tags": int(n_tags), "manifests": int(n_manifests)}


def index_counts(conn: Connection) -> dict[str, int]:
    """Row counts of the index, for the admin page."""
    tables = (
        ("indexed tags", search_tags),
        ("manifests with facts", search_facts),
        ("labels", search_labels),
        ("repositories", repositories),
        ("manifests", manifests),
        ("tags", tags),
        ("blobs", blobs),
    )
    return {
        name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in tables
    }
