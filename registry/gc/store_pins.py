"""SQL of the push side of garbage collection (issue #7): the pins, and the change hook.

Every function of the ``store_*`` modules takes a synchronous ``Connection`` and runs
through ``Database`` (``run_read``/``run_write``). The protocol that keeps GC safe while
pushes go on is in ``docs/gc.md``; in short:

- push-side operations *pin* the digests they rely on (:func:`pin`, :func:`touch`,
  :func:`guard_change`): inside their own write transaction they take a shared lock on
  each digest (``store_locks``), refuse a digest GC is deleting, and record
  ``gc_seen.seen_at = now``;
- GC decides each deletion in a write transaction (``store_doom``: ``doom_manifests``,
  ``doom_links``, ``doom_blobs``, ``doom_files``) that takes the same locks
  exclusively and checks again, on committed data, that the thing is still unreferenced
  and was not pinned within the grace period; only then are its rows deleted and, for
  bytes, a ``gc_doomed`` row written. Files are deleted after that commit, and the
  ``gc_doomed`` row after the file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from registry.gc.store_lease import live_holder
from registry.gc.store_locks import is_pg, lock
from registry.gc.tables import gc_doomed, gc_seen
from registry.meta import direct
from registry.meta import queries as q
from registry.meta.changes import Change
from registry.meta.store import check_references
from registry.meta.tables import blobs, repositories, repository_blobs
from registry.service.pins import DigestBusy, MountSourceGone


# Statements of the push side, built once: they run inside every push transaction.
@cache
def _doomed_query() -> Any:
    return select(gc_doomed.c.digest, gc_doomed.c.run_id).where(
        gc_doomed.c.digest.in_(bindparam("digests", expanding=True))
    )


@cache
def seen_upsert(dialect: str) -> Any:
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
    holder = live_holder(conn, now)
    for row in doomed:
        if holder is not None and row.run_id == holder:
            raise DigestBusy(row.digest)
    conn.execute(delete(gc_doomed).where(gc_doomed.c.digest.in_([r.digest for r in doomed])))


def _seen(conn: Connection, digests: Sequence[str], now: float) -> None:
    rows = [{"digest": d, "seen_at": now} for d in sorted(set(digests))]
    direct.execute_many(conn, seen_upsert(conn.dialect.name), rows)


def pin(conn: Connection, digests: Sequence[str], now: float) -> None:
    """Record that a push relies on ``digests`` now (before an upload's bytes are moved
    into place, before a manifest's bytes are stored). :class:`DigestBusy` if GC is
    deleting one of them."""
    lock(conn, digests, shared=True)
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
            q.not_quarantined(repository_blobs.c.digest),  # bad bytes: unknown (#18)
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
    lock(conn, [digest], shared=True)
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
    lock(conn, [digest], shared=True)
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
        if is_pg(conn):
            _recheck_references(conn, change)
