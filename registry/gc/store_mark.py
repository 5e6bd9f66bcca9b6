"""SQL of the mark (issue #7): what is unreachable from tags, pins and recent pushes,
computed in temporary tables; candidates only, the sweep decides each one again.

Features keep content of their own that no tag reaches (the pull-through mirror's
cache) through :class:`KeepRoots` given to the collector; GC reads no feature's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    exists,
    func,
    insert,
    or_,
    select,
    union,
)
from sqlalchemy.sql import Select

from registry.gc.tables import gc_seen
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repository_blobs,
    tags,
)


class KeepRoots(Protocol):
    """Content a feature keeps though no tag reaches it: more roots of the mark.

    ``name`` names them in logs. :meth:`repositories`: a select of one column, the ids
    of repositories kept whole (every blob linked into them stays, and so do the links);
    :meth:`digests`: a select of one column, digests whose bytes stay (a blob row, or a
    file no row names)."""

    @property
    def name(self) -> str: ...

    def repositories(self) -> Select[Any]: ...

    def digests(self) -> Select[Any]: ...


def _union(selects: Sequence[Select[Any]]) -> Any:
    """One select of the rows of ``selects`` (None if there are none)."""
    if not selects:
        return None
    return selects[0] if len(selects) == 1 else union(*selects)


def kept_repositories(roots: Sequence[KeepRoots]) -> Any:
    """The ids of the repositories ``roots`` keep whole (None: none)."""
    return _union([r.repositories() for r in roots])


def kept_bytes(roots: Sequence[KeepRoots]) -> Any:
    """The digests whose bytes ``roots`` keep, as a subquery of one column (None: none)."""
    found = _union([r.digests() for r in roots])
    return None if found is None else found.subquery()


@dataclass(frozen=True, slots=True)
class MarkOptions:
    """What a run keeps: ``cutoff`` is now minus the grace period (epoch seconds)."""

    cutoff: float
    delete_untagged: bool = False
    untagged_cutoff: float | None = None  # with delete_untagged: keep untagged newer than this


@dataclass(frozen=True, slots=True)
class ManifestCandidate:
    id: int
    repository_id: int
    digest: str
    size: int
    subject: str | None


@dataclass
class MarkResult:
    """What the mark found unreachable (candidates; the sweep checks each again)."""

    manifests: list[ManifestCandidate] = field(default_factory=list)
    # (parent or subject id, child or referrer id) among candidates: sweep parents first
    edges: list[tuple[int, int]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)  # (digest, size)
    links: list[tuple[int, str]] = field(default_factory=list)  # (repository_id, digest)
    live_manifests: int = 0
    live_blobs: int = 0


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def temp_tables() -> tuple[Table, Table]:
    md = MetaData()
    live = Table("gc_live", md, Column("id", Integer, primary_key=True), prefixes=["TEMPORARY"])
    live_blobs = Table(
        "gc_live_blobs", md, Column("digest", String(150), primary_key=True), prefixes=["TEMPORARY"]
    )
    return live, live_blobs


def drop_temp(conn: Connection) -> None:
    for name in ("gc_live", "gc_live_blobs"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def mark_live(conn: Connection, live: Table, opts: MarkOptions) -> int:
    """Fill ``live`` with the ids of reachable manifests; returns how many."""
    cutoff = to_datetime(opts.cutoff)
    m = manifests.alias("m")
    tagged = exists().where(tags.c.manifest_id == m.c.id)
    pinned = exists().where(gc_seen.c.digest == m.c.digest, gc_seen.c.seen_at >= opts.cutoff)
    roots = [tagged, m.c.created_at >= cutoff, pinned]
    untagged = m.c.subject_digest.is_(None)  # a referrer lives through its subject
    if not opts.delete_untagged:
        roots.append(untagged)
    elif opts.untagged_cutoff is not None:
        roots.append(and_(untagged, m.c.created_at >= to_datetime(opts.untagged_cutoff)))
    conn.execute(insert(live).from_select(["id"], select(m.c.id).where(or_(*roots))))
    parent, child, referrer = manifests.alias("p"), manifests.alias("c"), manifests.alias("r")
    known = select(live.c.id)
    while True:
        children = (
            select(child.c.id)
            .select_from(
                live.join(parent, parent.c.id == live.c.id)
                .join(manifest_children, manifest_children.c.parent_id == parent.c.id)
                .join(
                    child,
                    and_(
                        child.c.repository_id == parent.c.repository_id,
                        child.c.digest == manifest_children.c.child_digest,
                    ),
                )
            )
            .where(child.c.id.not_in(known))
        )
        referrers = (
            select(referrer.c.id)
            .select_from(
                live.join(parent, parent.c.id == live.c.id).join(
                    referrer,
                    and_(
                        referrer.c.repository_id == parent.c.repository_id,
                        referrer.c.subject_digest == parent.c.digest,
                    ),
                )
            )
            .where(referrer.c.id.not_in(known))
        )
        found = conn.execute(children.union(referrers)).scalars().all()
        if not found:
            break
        conn.execute(insert(live), [{"id": i} for i in found])
    count: int = conn.execute(select(func.count()).select_from(live)).scalar_one()
    return count


def mark(conn: Connection, opts: MarkOptions, roots: Sequence[KeepRoots] = ()) -> MarkResult:
    """Find everything unreachable from tags (and pins, and recent pushes, and ``roots``)."""
    live, live_blobs = temp_tables()
    drop_temp(conn)
    live.create(conn)
    live_blobs.create(conn)
    try:
        result = MarkResult()
        result.live_manifests = mark_live(conn, live, opts)
        referenced = select(manifest_blobs.c.digest).join(
            live, live.c.id == manifest_blobs.c.manifest_id
        )
        own = select(manifests.c.digest).join(live, live.c.id == manifests.c.id)
        conn.execute(
            insert(live_blobs).from_select(["digest"], referenced.union(own).subquery().select())
        )
        kept = _kept_blobs(roots)
        if kept is not None:
            extra = select(kept.c.digest).where(kept.c.digest.not_in(select(live_blobs.c.digest)))
            conn.execute(insert(live_blobs).from_select(["digest"], extra))
        result.live_blobs = conn.execute(select(func.count()).select_from(live_blobs)).scalar_one()
        unmarked = manifests.c.id.not_in(select(live.c.id))
        for row in conn.execute(
            select(
                manifests.c.id,
                manifests.c.repository_id,
                manifests.c.digest,
                manifests.c.size,
                manifests.c.subject_digest,
            ).where(unmarked)
        ):
            result.manifests.append(
                ManifestCandidate(
                    row.id, row.repository_id, row.digest, row.size, row.subject_digest
                )
            )
        if result.manifests:
            result.edges = _candidate_edges(conn, live)
        cutoff = to_datetime(opts.cutoff)
        # uncorrelated NOT IN subqueries: each computed once (SQLite plans a correlated
        # NOT EXISTS per blob row)
        pinned = select(gc_seen.c.digest).where(gc_seen.c.seen_at >= opts.cutoff)
        new_links = select(repository_blobs.c.digest).where(repository_blobs.c.created_at >= cutoff)
        query = select(blobs.c.digest, blobs.c.size).where(
            blobs.c.digest.not_in(select(live_blobs.c.digest)),
            blobs.c.created_at < cutoff,
            blobs.c.digest.not_in(pinned),
            blobs.c.digest.not_in(new_links),
        )
        result.blobs = [(r.digest, int(r.size)) for r in conn.execute(query)]
        result.links = _candidate_links(conn, live, live_blobs, opts, roots)
        return result
    finally:
        drop_temp(conn)


def _kept_blobs(roots: Sequence[KeepRoots]) -> Any:
    """Everything ``roots`` keep: their digests and every blob linked into a repository
    they keep whole, as a subquery with a ``digest`` column (None: no roots). Nothing
    here need be reachable from tags (the mirror keeps no manifest rows): it stays live,
    so that, say, cached images are served while the upstream is down."""
    kept = kept_repositories(roots)
    if kept is None:
        return None
    linked = select(repository_blobs.c.digest.label("digest")).where(
        repository_blobs.c.repository_id.in_(kept)
    )
    return union(linked, *(r.digests() for r in roots)).subquery()


def _candidate_edges(conn: Connection, live: Table) -> list[tuple[int, int]]:
    parent, child = manifests.alias("p"), manifests.alias("c")
    known = select(live.c.id)
    children = select(parent.c.id, child.c.id).select_from(
        parent.join(manifest_children, manifest_children.c.parent_id == parent.c.id).join(
            child,
            and_(
                child.c.repository_id == parent.c.repository_id,
                child.c.digest == manifest_children.c.child_digest,
            ),
        )
    )
    children = children.where(parent.c.id.not_in(known), child.c.id.not_in(known))
    subject, referrer = manifests.alias("s"), manifests.alias("r")
    referrers = (
        select(subject.c.id, referrer.c.id)
        .select_from(
            subject.join(
                referrer,
                and_(
                    referrer.c.repository_id == subject.c.repository_id,
                    referrer.c.subject_digest == subject.c.digest,
                ),
            )
        )
        .where(subject.c.id.not_in(known), referrer.c.id.not_in(known))
    )
    return [(int(a), int(b)) for a, b in conn.execute(children.union(referrers))]


def _candidate_links(
    conn: Connection,
    live: Table,
    live_blobs: Table,
    opts: MarkOptions,
    roots: Sequence[KeepRoots],
) -> list[tuple[int, str]]:
    """Links of live blobs into repositories where no live manifest references them."""
    md = MetaData()
    used = Table(
        "gc_used_links",
        md,
        Column("repository_id", Integer, primary_key=True),
        Column("digest", String(150), primary_key=True),
        prefixes=["TEMPORARY"],
    )
    conn.exec_driver_sql("DROP TABLE IF EXISTS gc_used_links")
    used.create(conn)
    try:
        in_live = (
            select(manifests.c.repository_id, manifest_blobs.c.digest)
            .select_from(
                live.join(manifests, manifests.c.id == live.c.id).join(
                    manifest_blobs, manifest_blobs.c.manifest_id == manifests.c.id
                )
            )
            .distinct()
        )
        conn.execute(insert(used).from_select(["repository_id", "digest"], in_live))
        rb = repository_blobs
        query = (
            select(rb.c.repository_id, rb.c.digest)
            .select_from(
                rb.join(live_blobs, live_blobs.c.digest == rb.c.digest)
                .outerjoin(
                    used,
                    and_(used.c.repository_id == rb.c.repository_id, used.c.digest == rb.c.digest),
                )
                .outerjoin(gc_seen, gc_seen.c.digest == rb.c.digest)
            )
            .where(
                used.c.digest.is_(None),
                rb.c.created_at < to_datetime(opts.cutoff),
                or_(gc_seen.c.seen_at.is_(None), gc_seen.c.seen_at < opts.cutoff),
            )
        )
        kept = kept_repositories(roots)
        if kept is not None:  # a repository kept whole keeps its links
            query = query.where(rb.c.repository_id.not_in(kept))
        return [(int(r.repository_id), r.digest) for r in conn.execute(query)]
    finally:
        conn.exec_driver_sql("DROP TABLE IF EXISTS gc_used_links")
