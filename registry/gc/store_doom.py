"""SQL of the sweep (issue #7): each deletion decided again, under the digest locks, on
committed data; doomed bytes noted in ``gc_doomed`` until their file is gone."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from sqlalchemy import Connection, and_, delete, func, insert, literal, select, update

from registry.gc.store_locks import lock
from registry.gc.store_mark import KeepRoots, ManifestCandidate, kept_bytes, to_datetime
from registry.gc.store_pins import seen_upsert
from registry.gc.tables import gc_doomed, gc_seen
from registry.meta.changes import Change, ChangeHook
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tags,
)


class Removed(Protocol):
    """A feature's callback (``Collector(removed=...)``), called inside the sweep's
    deleting transaction with the digests whose links, manifests or blob rows it has
    just deleted (another repository may still hold them): the quota feature's usage."""

    def __call__(self, conn: Connection, digests: Sequence[str], /) -> None: ...


def _removed(conn: Connection, removed: Sequence[Removed], digests: Sequence[str]) -> None:
    if digests:
        for callback in removed:
            callback(conn, digests)


def _pinned_since(conn: Connection, digests: Sequence[str], cutoff: float) -> set[str]:
    return set(
        conn.execute(
            select(gc_seen.c.digest).where(
                gc_seen.c.digest.in_(digests), gc_seen.c.seen_at >= cutoff
            )
        ).scalars()
    )


def _mark_collected(conn: Connection, digests: Sequence[str], now: float) -> None:
    rows = [{"digest": d, "seen_at": -now} for d in digests]
    if rows:
        conn.execute(seen_upsert(conn.dialect.name), rows)


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
    removed: Sequence[Removed] = (),
) -> tuple[list[DeletedManifest], list[int]]:
    """Delete the manifests of ``batch`` still unreachable; returns (deleted, spared ids).

    ``pending`` holds the ids of candidates not yet decided (this batch included): a
    parent or subject outside it is live (or new), and keeps the manifest. Batches go
    parents first, so a spared parent keeps its children.
    """
    if not batch:
        return [], []
    lock(conn, [c.digest for c in batch], shared=False)
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
    cutoff_dt = to_datetime(cutoff)
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
        _removed(conn, removed, [d.digest for d in doomed])
    return doomed, spared


def doom_links(
    conn: Connection,
    batch: Sequence[tuple[int, str]],
    cutoff: float,
    removed: Sequence[Removed] = (),
) -> int:
    """Delete the links of ``batch`` still unused in their repository; returns how many."""
    if not batch:
        return 0
    digests = sorted({d for _, d in batch})
    lock(conn, digests, shared=False)
    pinned = _pinned_since(conn, digests, cutoff)
    cutoff_dt = to_datetime(cutoff)
    deleted = 0
    gone: list[str] = []
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
        if result.rowcount:
            gone.append(digest)
        deleted += result.rowcount
    _removed(conn, removed, gone)
    return deleted


def doom_blobs(
    conn: Connection,
    batch: Sequence[tuple[str, int]],
    run_id: int,
    cutoff: float,
    removed: Sequence[Removed] = (),
) -> list[tuple[str, int]]:
    """Delete the blob rows (and links) of ``batch`` still unreferenced; each one deleted
    gets a ``gc_doomed`` row in the same transaction. Returns the doomed (digest, size)."""
    if not batch:
        return []
    digests = sorted({d for d, _ in batch})
    lock(conn, digests, shared=False)
    now = time.time()
    _check_doomed_for_gc(conn, digests)
    cutoff_dt = to_datetime(cutoff)
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
        _removed(conn, removed, gone)
    return doomed


def _check_doomed_for_gc(conn: Connection, digests: Sequence[str]) -> None:
    """Drop stale ``gc_doomed`` rows of ``digests`` (a previous run's, whose file the
    caller deletes again anyway) so that a new doom row can be written."""
    conn.execute(delete(gc_doomed).where(gc_doomed.c.digest.in_(digests)))


def doom_files(
    conn: Connection,
    batch: Sequence[tuple[str, int, float]],
    run_id: int,
    cutoff: float,
    roots: Sequence[KeepRoots] = (),
) -> list[tuple[str, int]]:
    """Doom stored bytes no row names and no root keeps (orphans, bytes of deleted
    manifests): ``batch`` is (digest, size, file mtime). Returns the doomed (digest, size)."""
    if not batch:
        return []
    digests = sorted({d for d, _, _ in batch})
    lock(conn, digests, shared=False)
    now = time.time()
    pinned = _pinned_since(conn, digests, cutoff)
    named = set(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests))).scalars())
    named |= set(
        conn.execute(select(manifests.c.digest).where(manifests.c.digest.in_(digests))).scalars()
    )
    named |= set(
        conn.execute(select(gc_doomed.c.digest).where(gc_doomed.c.digest.in_(digests))).scalars()
    )
    kept = kept_bytes(roots)
    if kept is not None:  # bytes a feature keeps (a mirror's cached manifests)
        named |= set(conn.execute(select(kept.c[0]).where(kept.c[0].in_(digests))).scalars())
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
