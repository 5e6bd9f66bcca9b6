"""SQL of the garbage collector (issue #7): mark, guarded sweeps, pins, lease, runs, usage.

Every function takes a synchronous ``Connection`` and runs through ``Database``
(``run_read``/``run_write``). The protocol that keeps GC safe while pushes go on is in
``docs/gc.md``; in short:

- push-side operations *pin* the digests they rely on (:func:`pin`, :func:`touch`,
  :func:`guard_change`): inside their own write transaction they take a shared lock on
  each digest, refuse a digest GC is deleting, and record ``gc_seen.seen_at = now``;
- GC decides each deletion in a write transaction (:func:`doom_manifests`,
  :func:`doom_links`, :func:`doom_blobs`, :func:`doom_files`) that takes the same locks
  exclusively and checks again, on committed data, that the thing is still unreferenced
  and was not pinned within the grace period; only then are its rows deleted and, for
  bytes, a ``gc_doomed`` row written. Files are deleted after that commit, and the
  ``gc_doomed`` row after the file.

On SQLite every write transaction runs alone (one writer, a file lock shared by all
processes), so the locks are implicit; on PostgreSQL they are transaction-level advisory
locks keyed by the digest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from registry.errors import Unavailable
from registry.meta import direct
from registry.meta import queries as q
from registry.meta.changes import Change, ChangeHook
from registry.meta.gc_tables import gc_doomed, gc_lease, gc_runs, gc_seen
from registry.meta.store import check_references
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from replicator.tables import mirror_manifests

LEASE_NAME = "gc"
FAR_FUTURE = 4102444800.0  # 2100-01-01: a cutoff that keeps nothing by age


class DigestBusy(Unavailable):
    """A digest is being deleted by a running garbage collection: retry shortly (503)."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"{digest} is being garbage collected; retry shortly")
        self.digest = digest


class MountSourceGone(Exception):
    """The blob a mount named is no longer linked to its source repository."""


def _upsert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def lock_key(digest: str) -> int:
    """A signed 64-bit advisory lock key for a digest (60 bits of its hex)."""
    hexpart = digest.split(":", 1)[-1]
    try:
        return int(hexpart[:15], 16)
    except ValueError:
        return hash(digest) & 0x0FFF_FFFF_FFFF_FFFF


def _lock(conn: Connection, digests: Iterable[str], shared: bool) -> None:
    """Take transaction-level locks on ``digests`` (PostgreSQL; SQLite runs writers alone).

    Keys are taken in ascending order by everyone, so two lockers never deadlock on them.
    """
    if not _is_pg(conn):
        return
    keys = sorted({lock_key(d) for d in digests})
    if not keys:
        return
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(
        text(f"SELECT {fn}(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) s"),
        {"keys": keys},
    )


# -- the push side -----------------------------------------------------------------


def _live_holder(conn: Connection, now: float) -> int | None:
    """The run holding an unexpired lease, if any."""
    row = conn.execute(
        select(gc_lease.c.run_id, gc_lease.c.expires_at).where(gc_lease.c.name == LEASE_NAME)
    ).first()
    if row is None or row.expires_at <= now:
        return None
    return int(row.run_id) if row.run_id is not None else None


# Statements of the push side, built once: they run inside every push transaction.
@cache
def _doomed_query() -> Any:
    return select(gc_doomed.c.digest, gc_doomed.c.run_id).where(
        gc_doomed.c.digest.in_(bindparam("digests", expanding=True))
    )


@cache
def _seen_upsert(dialect: str) -> Any:
    stmt = q.upsert_module(dialect).insert(gc_seen)
    return stmt.on_conflict_do_update(
        index_elements=[gc_seen.c.digest], set_={"seen_at": stmt.excluded.seen_at}
    )


@cache
def _seen_at_query() -> Any:
    return select(gc_seen.c.seen_at).where(gc_seen.c.digest == bindparam("digest"))


@cache
def _doomed_one() -> Any:
    return select(gc_doomed.c.digest, gc_doomed.c.run_id).where(
        gc_doomed.c.digest == bindparam("digest")
    )


@dataclass(frozen=True, slots=True)
class _Doomed:
    digest: str
    run_id: int | None


def _doomed_rows(conn: Connection, digests: Sequence[str]) -> list[Any]:
    """(digest, run_id) of those of ``digests`` a run doomed; one direct lookup each on
    the SQLite writer (cheaper there than an expanding ``IN``)."""
    if direct.available(conn):
        found = (direct.first(conn, _doomed_one(), {"digest": d}) for d in set(digests))
        return [_Doomed(*row) for row in found if row is not None]
    return list(conn.execute(_doomed_query(), {"digests": list(digests)}).all())


def _check_doomed(conn: Connection, digests: Sequence[str], now: float) -> None:
    """Raise :class:`DigestBusy` for a digest a live run is deleting; forget dooms left by
    a dead run (their rows are gone already, the file may stay: the caller puts its own)."""
    doomed = _doomed_rows(conn, digests)
    if not doomed:
        return
    holder = _live_holder(conn, now)
    for row in doomed:
        if holder is not None and row.run_id == holder:
            raise DigestBusy(row.digest)
    conn.execute(delete(gc_doomed).where(gc_doomed.c.digest.in_([r.digest for r in doomed])))


def _seen(conn: Connection, digests: Sequence[str], now: float) -> None:
    rows = [{"digest": d, "seen_at": now} for d in sorted(set(digests))]
    direct.execute_many(conn, _seen_upsert(conn.dialect.name), rows)


def pin(conn: Connection, digests: Sequence[str], now: float) -> None:
    """Record that a push relies on ``digests`` now (before an upload's bytes are moved
    into place, before a manifest's bytes are stored). :class:`DigestBusy` if GC is
    deleting one of them."""
    _lock(conn, digests, shared=True)
    _check_doomed(conn, digests, now)
    _seen(conn, digests, now)


@cache
def _size_and_seen_query() -> Any:
    """Parameters: ``name``, ``digest`` (built once: the blob HEAD/GET hot path)."""
    return (
        select(blobs.c.size, gc_seen.c.seen_at)
        .select_from(
            repositories.join(
                repository_blobs, repository_blobs.c.repository_id == repositories.c.id
            )
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .outerjoin(gc_seen, gc_seen.c.digest == blobs.c.digest)
        )
        .where(
            repositories.c.name == bindparam("name"),
            repository_blobs.c.digest == bindparam("digest"),
        )
    )


def size_and_seen(conn: Connection, repository: str, digest: str) -> tuple[int, float] | None:
    """A linked blob's size and when it was last pinned (0 if never); None if not linked."""
    params = {"name": repository, "digest": digest}
    row = conn.execute(_size_and_seen_query(), params).first()
    if row is None:
        return None
    return int(row.size), float(row.seen_at or 0.0)


def touch(conn: Connection, repository: str, digest: str, now: float) -> int | None:
    """A blob HEAD or GET: the size of ``digest`` in ``repository`` (None if not linked),
    pinned so that a client skipping its upload can still reference it."""
    _lock(conn, [digest], shared=True)
    params = {"name": repository, "digest": digest}
    size: int | None = conn.execute(q.blob_size_in_repository(), params).scalar()
    if size is not None:
        _seen(conn, [digest], now)
    return size


def _recheck_references(conn: Connection, change: Change) -> None:
    """On PostgreSQL, after the locks: are the manifest's references still there?

    ``put_manifest`` checked them before the locks were taken; a GC that deleted one in
    between has committed by now, and this statement sees it.
    """
    new = change.manifest
    assert new is not None
    repo_id = conn.execute(q.repository_id(), {"name": change.repository}).scalar()
    check_references(conn, -1 if repo_id is None else int(repo_id), new)  # -1: none there


def _check_not_collected(conn: Connection, digest: str) -> None:
    """Raise :class:`DigestBusy` if GC collected ``digest`` after the push pinned it (the
    push stalled longer than the grace period between its pin and its link: the bytes it
    put in place may be gone). GC leaves a negative ``seen_at`` when it dooms bytes; a pin
    makes it positive again."""
    _lock(conn, [digest], shared=True)
    seen = direct.scalar(conn, _seen_at_query(), {"digest": digest})
    if seen is not None and seen < 0:
        raise DigestBusy(digest)


def _finishes_upload(change: Change) -> bool:
    """A blob link made by an upload's last request (PUT, or a monolithic POST), which
    pinned the digest before moving the bytes in; not a mount, not a mirror's fetch."""
    request = change.request
    return (
        change.from_repository is None and request is not None and request.method in ("PUT", "POST")
    )


def _mark_collected(conn: Connection, digests: Sequence[str], now: float) -> None:
    rows = [{"digest": d, "seen_at": -now} for d in digests]
    if rows:
        conn.execute(_seen_upsert(conn.dialect.name), rows)


def guard_change(conn: Connection, change: Change) -> None:
    """The change hook: every blob link, mount and manifest push pins what it relies on.

    A mount also checks, after the lock, that its source link is still there (GC may have
    deleted it, and then the bytes, after the mount looked).
    """
    now = time.time()
    if change.kind == "blob" and change.action in ("push", "mount"):
        if _finishes_upload(change):
            _check_not_collected(conn, change.digest)
        pin(conn, [change.digest], now)
        if change.from_repository is not None:
            params = {"name": change.from_repository, "digest": change.digest}
            if conn.execute(q.blob_size_in_repository(), params).scalar() is None:
                raise MountSourceGone(change.digest)
    elif change.kind == "manifest" and change.action == "push" and change.manifest is not None:
        new = change.manifest
        digests = [new.digest, *dict(new.blobs), *new.children]
        if new.subject:
            digests.append(new.subject)
        # (no _check_not_collected for the manifest's own bytes: the push holds them and
        # puts them back after this commits if a GC deleted them; see ManifestService.put)
        pin(conn, digests, now)
        if _is_pg(conn):
            _recheck_references(conn, change)


# -- mark ------------------------------------------------------------------------------


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


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _temp_tables() -> tuple[Table, Table]:
    md = MetaData()
    live = Table("gc_live", md, Column("id", Integer, primary_key=True), prefixes=["TEMPORARY"])
    live_blobs = Table(
        "gc_live_blobs", md, Column("digest", String(150), primary_key=True), prefixes=["TEMPORARY"]
    )
    return live, live_blobs


def _drop_temp(conn: Connection) -> None:
    for name in ("gc_live", "gc_live_blobs"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def _mark_live(conn: Connection, live: Table, opts: MarkOptions) -> int:
    """Fill ``live`` with the ids of reachable manifests; returns how many."""
    cutoff = _dt(opts.cutoff)
    m = manifests.alias("m")
    tagged = exists().where(tags.c.manifest_id == m.c.id)
    pinned = exists().where(gc_seen.c.digest == m.c.digest, gc_seen.c.seen_at >= opts.cutoff)
    roots = [tagged, m.c.created_at >= cutoff, pinned]
    untagged = m.c.subject_digest.is_(None)  # a referrer lives through its subject
    if not opts.delete_untagged:
        roots.append(untagged)
    elif opts.untagged_cutoff is not None:
        roots.append(and_(untagged, m.c.created_at >= _dt(opts.untagged_cutoff)))
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


def mark(conn: Connection, opts: MarkOptions) -> MarkResult:
    """Find everything unreachable from tags (and pins, and recent pushes)."""
    live, live_blobs = _temp_tables()
    _drop_temp(conn)
    live.create(conn)
    live_blobs.create(conn)
    try:
        result = MarkResult()
        result.live_manifests = _mark_live(conn, live, opts)
        referenced = select(manifest_blobs.c.digest).join(
            live, live.c.id == manifest_blobs.c.manifest_id
        )
        own = select(manifests.c.digest).join(live, live.c.id == manifests.c.id)
        conn.execute(
            insert(live_blobs).from_select(["digest"], referenced.union(own).subquery().select())
        )
        mirrored = _mirrored_blobs().subquery()
        extra = select(mirrored.c.digest).where(
            mirrored.c.digest.not_in(select(live_blobs.c.digest))
        )
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
        cutoff = _dt(opts.cutoff)
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
        result.links = _candidate_links(conn, live, live_blobs, opts)
        return result
    finally:
        _drop_temp(conn)


def _mirror_repositories() -> Any:
    """Repositories holding a pull-through mirror's cache (issue #6)."""
    names = select(mirror_manifests.c.repository)
    return select(repositories.c.id).where(repositories.c.name.in_(names))


def _mirrored_blobs() -> Any:
    """Everything a mirror cached: its manifests' bytes and every blob linked into a mirrored
    repository. The mirror keeps no manifest rows, so nothing here is reachable from tags;
    it stays live so cached images are served while the upstream is down."""
    manifests_bytes = select(mirror_manifests.c.digest.label("digest"))
    linked = select(repository_blobs.c.digest.label("digest")).where(
        repository_blobs.c.repository_id.in_(_mirror_repositories())
    )
    return linked.union(manifests_bytes)


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
    conn: Connection, live: Table, live_blobs: Table, opts: MarkOptions
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
                rb.c.repository_id.not_in(_mirror_repositories()),
                rb.c.created_at < _dt(opts.cutoff),
                or_(gc_seen.c.seen_at.is_(None), gc_seen.c.seen_at < opts.cutoff),
            )
        )
        return [(int(r.repository_id), r.digest) for r in conn.execute(query)]
    finally:
        conn.exec_driver_sql("DROP TABLE IF EXISTS gc_used_links")


# -- sweep: each decision again, under the locks ---------------------------------------


def _pinned_since(conn: Connection, digests: Sequence[str], cutoff: float) -> set[str]:
    return set(
        conn.execute(
            select(gc_seen.c.digest).where(
                gc_seen.c.digest.in_(digests), gc_seen.c.seen_at >= cutoff
            )
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class DeletedManifest:
    id: int
    repository: str
    digest: str
    media_type: str
    size: int


def doom_manifests(
    conn: Connection,
    batch: Sequence[ManifestCandidate],
    pending: frozenset[int],
    cutoff: float,
    hooks: Sequence[ChangeHook] = (),
) -> tuple[list[DeletedManifest], list[int]]:
    """Delete the manifests of ``batch`` still unreachable; returns (deleted, spared ids).

    ``pending`` holds the ids of candidates not yet decided (this batch included): a
    parent or subject outside it is live (or new), and keeps the manifest. Batches go
    parents first, so a spared parent keeps its children.
    """
    if not batch:
        return [], []
    _lock(conn, [c.digest for c in batch], shared=False)
    ids = [c.id for c in batch]
    pinned = _pinned_since(conn, [c.digest for c in batch], cutoff)
    rows = {
        r.id: r
        for r in conn.execute(
            select(
                manifests.c.id,
                manifests.c.repository_id,
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.subject_digest,
                manifests.c.created_at,
                repositories.c.name,
            )
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(manifests.c.id.in_(ids))
        )
    }
    tagged = set(
        conn.execute(select(tags.c.manifest_id).where(tags.c.manifest_id.in_(ids))).scalars()
    )
    parent = manifests.alias("p")
    parents: dict[int, set[int]] = {}
    child = manifests.alias("c")
    for child_id, parent_id in conn.execute(
        select(child.c.id, parent.c.id)
        .select_from(
            child.join(manifest_children, manifest_children.c.child_digest == child.c.digest).join(
                parent,
                and_(
                    parent.c.id == manifest_children.c.parent_id,
                    parent.c.repository_id == child.c.repository_id,
                ),
            )
        )
        .where(child.c.id.in_(ids))
    ):
        parents.setdefault(int(child_id), set()).add(int(parent_id))
    subjects: dict[int, set[int]] = {}
    subject = manifests.alias("s")
    for ref_id, subject_id in conn.execute(
        select(child.c.id, subject.c.id)
        .select_from(
            child.join(
                subject,
                and_(
                    subject.c.repository_id == child.c.repository_id,
                    subject.c.digest == child.c.subject_digest,
                ),
            )
        )
        .where(child.c.id.in_(ids))
    ):
        subjects.setdefault(int(ref_id), set()).add(int(subject_id))
    cutoff_dt = _dt(cutoff)
    doomed: list[DeletedManifest] = []
    spared: list[int] = []
    for c in batch:
        row = rows.get(c.id)
        if row is None:
            continue  # deleted meanwhile
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        keep = (
            c.id in tagged
            or c.digest in pinned
            or created >= cutoff_dt
            or any(p not in pending for p in parents.get(c.id, ()))
            or any(s not in pending for s in subjects.get(c.id, ()))
        )
        if keep:
            spared.append(c.id)
        else:
            doomed.append(
                DeletedManifest(c.id, row.name, row.digest, row.media_type, int(row.size))
            )
    gone = [d.id for d in doomed]
    if gone:
        conn.execute(delete(tags).where(tags.c.manifest_id.in_(gone)))
        conn.execute(delete(manifest_blobs).where(manifest_blobs.c.manifest_id.in_(gone)))
        conn.execute(delete(manifest_children).where(manifest_children.c.parent_id.in_(gone)))
        conn.execute(delete(manifests).where(manifests.c.id.in_(gone)))
        for d in doomed:
            change = Change(
                action="delete",
                kind="manifest",
                repository=d.repository,
                digest=d.digest,
                media_type=d.media_type,
                size=d.size,
                details={"reason": "garbage collection"},
            )
            for hook in hooks:
                hook(conn, change)
    return doomed, spared


def doom_links(conn: Connection, batch: Sequence[tuple[int, str]], cutoff: float) -> int:
    """Delete the links of ``batch`` still unused in their repository; returns how many."""
    if not batch:
        return 0
    digests = sorted({d for _, d in batch})
    _lock(conn, digests, shared=False)
    pinned = _pinned_since(conn, digests, cutoff)
    cutoff_dt = _dt(cutoff)
    deleted = 0
    for repo_id, digest in batch:
        if digest in pinned:
            continue
        used = conn.execute(
            select(literal(1))
            .select_from(
                manifest_blobs.join(manifests, manifests.c.id == manifest_blobs.c.manifest_id)
            )
            .where(manifests.c.repository_id == repo_id, manifest_blobs.c.digest == digest)
            .limit(1)
        ).first()
        if used is not None:
            continue
        result = conn.execute(
            delete(repository_blobs).where(
                repository_blobs.c.repository_id == repo_id,
                repository_blobs.c.digest == digest,
                repository_blobs.c.created_at < cutoff_dt,
            )
        )
        deleted += result.rowcount
    return deleted


def doom_blobs(
    conn: Connection, batch: Sequence[tuple[str, int]], run_id: int, cutoff: float
) -> list[tuple[str, int]]:
    """Delete the blob rows (and links) of ``batch`` still unreferenced; each one deleted
    gets a ``gc_doomed`` row in the same transaction. Returns the doomed (digest, size)."""
    if not batch:
        return []
    digests = sorted({d for d, _ in batch})
    _lock(conn, digests, shared=False)
    now = time.time()
    _check_doomed_for_gc(conn, digests)
    cutoff_dt = _dt(cutoff)
    pinned = _pinned_since(conn, digests, cutoff)
    rows = {
        r.digest: r
        for r in conn.execute(
            select(blobs.c.digest, blobs.c.size, blobs.c.created_at).where(
                blobs.c.digest.in_(digests)
            )
        )
    }
    referenced = set(
        conn.execute(
            select(manifest_blobs.c.digest).where(manifest_blobs.c.digest.in_(digests))
        ).scalars()
    )
    referenced |= set(
        conn.execute(select(manifests.c.digest).where(manifests.c.digest.in_(digests))).scalars()
    )
    referenced |= set(
        conn.execute(
            select(repository_blobs.c.digest).where(
                repository_blobs.c.digest.in_(digests), repository_blobs.c.created_at >= cutoff_dt
            )
        ).scalars()
    )
    doomed: list[tuple[str, int]] = []
    for digest in digests:
        row = rows.get(digest)
        if row is None or digest in pinned or digest in referenced:
            continue
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        if created >= cutoff_dt:
            continue
        doomed.append((digest, int(row.size)))
    gone = [d for d, _ in doomed]
    if gone:
        conn.execute(delete(repository_blobs).where(repository_blobs.c.digest.in_(gone)))
        conn.execute(delete(blobs).where(blobs.c.digest.in_(gone)))
        conn.execute(
            insert(gc_doomed),
            [{"digest": d, "run_id": run_id, "size": s, "doomed_at": now} for d, s in doomed],
        )
        _mark_collected(conn, gone, now)
    return doomed


def _check_doomed_for_gc(conn: Connection, digests: Sequence[str]) -> None:
    """Drop stale ``gc_doomed`` rows of ``digests`` (a previous run's, whose file the
    caller deletes again anyway) so that a new doom row can be written."""
    conn.execute(delete(gc_doomed).where(gc_doomed.c.digest.in_(digests)))


def doom_files(
    conn: Connection, batch: Sequence[tuple[str, int, float]], run_id: int, cutoff: float
) -> list[tuple[str, int]]:
    """Doom stored bytes no row names (orphans, bytes of deleted manifests): ``batch`` is
    (digest, size, file mtime). Returns the doomed (digest, size)."""
    if not batch:
        return []
    digests = sorted({d for d, _, _ in batch})
    _lock(conn, digests, shared=False)
    now = time.time()
    pinned = _pinned_since(conn, digests, cutoff)
    named = set(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests))).scalars())
    named |= set(
        conn.execute(select(manifests.c.digest).where(manifests.c.digest.in_(digests))).scalars()
    )
    named |= set(
        conn.execute(select(gc_doomed.c.digest).where(gc_doomed.c.digest.in_(digests))).scalars()
    )
    mirrored = select(mirror_manifests.c.digest).where(mirror_manifests.c.digest.in_(digests))
    named |= set(conn.execute(mirrored).scalars())  # a mirror's cached manifests
    doomed: list[tuple[str, int]] = []
    seen: set[str] = set()
    for digest, size, mtime in batch:
        if digest in seen or digest in named or digest in pinned or mtime >= cutoff:
            continue
        seen.add(digest)
        doomed.append((digest, size))
    if doomed:
        conn.execute(
            insert(gc_doomed),
            [{"digest": d, "run_id": run_id, "size": s, "doomed_at": now} for d, s in doomed],
        )
        _mark_collected(conn, [d for d, _ in doomed], now)
    return doomed


def forget_doomed(conn: Connection, digests: Sequence[str], run_id: int) -> None:
    """The files of ``digests`` are gone: drop their ``gc_doomed`` rows."""
    if digests:
        conn.execute(
            delete(gc_doomed).where(gc_doomed.c.digest.in_(digests), gc_doomed.c.run_id == run_id)
        )


def adopt_doomed(conn: Connection, run_id: int) -> list[tuple[str, int]]:
    """Take over the ``gc_doomed`` rows an interrupted run left; returns (digest, size)."""
    conn.execute(update(gc_doomed).values(run_id=run_id))
    return [
        (r.digest, int(r.size)) for r in conn.execute(select(gc_doomed.c.digest, gc_doomed.c.size))
    ]


def prune_seen(conn: Connection, before: float) -> int:
    """Forget pins, and marks of collected bytes (negative), older than ``before``."""
    stale = delete(gc_seen).where(func.abs(gc_seen.c.seen_at) < before)
    return int(conn.execute(stale).rowcount)


IN_BATCH = 500


def known_digests(conn: Connection, digests: Sequence[str]) -> set[str]:
    """Which of ``digests`` a row names (a blob or a manifest)."""
    found: set[str] = set()
    for i in range(0, len(digests), IN_BATCH):
        part = list(digests[i : i + IN_BATCH])
        found |= set(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(part))).scalars())
        found |= set(
            conn.execute(select(manifests.c.digest).where(manifests.c.digest.in_(part))).scalars()
        )
    return found


def kept_digests(conn: Connection, digests: Sequence[str], gone_ids: frozenset[int]) -> set[str]:
    """Which of ``digests`` a blob row or a manifest row outside ``gone_ids`` names."""
    kept: set[str] = set()
    for i in range(0, len(digests), IN_BATCH):
        part = list(digests[i : i + IN_BATCH])
        for row in conn.execute(
            select(manifests.c.id, manifests.c.digest).where(manifests.c.digest.in_(part))
        ):
            if row.id not in gone_ids:
                kept.add(row.digest)
        kept |= set(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(part))).scalars())
    return kept


# -- lease and runs ----------------------------------------------------------------------


def acquire_lease(
    conn: Connection, holder: str, now: float, ttl: float, dead: str | None = None
) -> bool:
    """Take the GC lease if it is free or expired (or already ``holder``'s, or held by
    ``dead``, a holder known to have died)."""
    _lock(conn, [LEASE_NAME], shared=False)
    row = conn.execute(
        select(gc_lease.c.holder, gc_lease.c.expires_at).where(gc_lease.c.name == LEASE_NAME)
    ).first()
    if row is None:
        conn.execute(
            insert(gc_lease).values(
                name=LEASE_NAME, holder=holder, run_id=None, expires_at=now + ttl
            )
        )
        return True
    if row.holder not in (holder, dead) and row.expires_at > now:
        return False
    conn.execute(
        update(gc_lease)
        .where(gc_lease.c.name == LEASE_NAME)
        .values(holder=holder, run_id=None, expires_at=now + ttl)
    )
    return True


def renew_lease(conn: Connection, holder: str, now: float, ttl: float, run_id: int | None) -> bool:
    """Extend ``holder``'s lease (and name its run); False if it lost it."""
    result = conn.execute(
        update(gc_lease)
        .where(gc_lease.c.name == LEASE_NAME, gc_lease.c.holder == holder)
        .values(expires_at=now + ttl, run_id=run_id)
    )
    return bool(result.rowcount)


def release_lease(conn: Connection, holder: str) -> None:
    conn.execute(
        update(gc_lease)
        .where(gc_lease.c.name == LEASE_NAME, gc_lease.c.holder == holder)
        .values(expires_at=0.0, run_id=None)
    )


def lease_holder(conn: Connection, now: float) -> str | None:
    row = conn.execute(
        select(gc_lease.c.holder, gc_lease.c.expires_at).where(gc_lease.c.name == LEASE_NAME)
    ).first()
    return str(row.holder) if row is not None and row.expires_at > now else None


def start_run(
    conn: Connection, holder: str, trigger: str, dry_run: bool, options: dict[str, Any], now: float
) -> int:
    """Record a new run (and close runs left 'running' by dead processes)."""
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.state == "running")
        .values(state="interrupted", finished_at=now)
    )
    run_id: int = conn.execute(
        insert(gc_runs)
        .values(
            started_at=now,
            heartbeat_at=now,
            state="running",
            trigger=trigger,
            holder=holder,
            dry_run=dry_run,
            options=json.dumps(options),
            progress=json.dumps({"phase": "starting"}),
        )
        .returning(gc_runs.c.id)
    ).scalar_one()
    return run_id


def progress_run(conn: Connection, run_id: int, progress: dict[str, Any], now: float) -> None:
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.id == run_id)
        .values(progress=json.dumps(progress), heartbeat_at=now)
    )


def finish_run(
    conn: Connection,
    run_id: int,
    state: str,
    result: dict[str, Any],
    error: str | None,
    now: float,
) -> None:
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.id == run_id)
        .values(
            state=state,
            finished_at=now,
            heartbeat_at=now,
            result=json.dumps(result),
            error=error,
            progress=json.dumps({"phase": state}),
        )
    )


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "trigger": row.trigger,
        "holder": row.holder,
        "dry_run": bool(row.dry_run),
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "heartbeat_at": row.heartbeat_at,
        "options": json.loads(row.options),
        "progress": json.loads(row.progress),
        "result": json.loads(row.result) if row.result else None,
        "error": row.error,
    }


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(gc_runs).where(gc_runs.c.id == run_id)).first()
    return _run_dict(row) if row is not None else None


def list_runs(conn: Connection, limit: int, before: int | None) -> list[dict[str, Any]]:
    query = select(gc_runs).order_by(gc_runs.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(gc_runs.c.id < before)
    return [_run_dict(r) for r in conn.execute(query)]


def last_finished(conn: Connection) -> float | None:
    """When the last run that did not fail ended (for the schedule)."""
    value = conn.execute(
        select(func.max(gc_runs.c.started_at)).where(gc_runs.c.trigger == "schedule")
    ).scalar()
    return float(value) if value is not None else None


# -- accounting -------------------------------------------------------------------------


def usage(conn: Connection, opts: MarkOptions) -> dict[str, Any]:
    """Per repository: the logical size (every blob and manifest its tags reach, once) and
    the bytes only it holds; for the registry: physical bytes and what GC would reclaim."""
    live, live_blobs = _temp_tables()
    _drop_temp(conn)
    live.create(conn)
    live_blobs.create(conn)
    try:
        tag_only = MarkOptions(cutoff=FAR_FUTURE, delete_untagged=True)
        _mark_live(conn, live, tag_only)
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
        _drop_temp(conn)
    found = mark(conn, opts)
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
