"""SQL of the scrub (issue #18): its runs, its lease, what it walks, what it quarantines.

Every function takes a synchronous ``Connection`` and runs through ``Database``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, literal, select, union_all, update

from registry.meta import lease, quarantine
from registry.meta.tables import blob_quarantine, blobs, manifests, repositories, repository_blobs
from registry.request_context import RequestInfo
from registry.scrub.tables import scrub_lease, scrub_runs

# the events feature's ``OutboxHook.record(conn, action, repository, target, request)``
Record = Callable[[Connection, str, str, dict[str, object], RequestInfo | None], None]
EVENT = "scrub_bad"  # the action of the event written for each repository holding it

LEASE_NAME = "scrub"
SCRUB_LEASE = lease.LeaseTable(scrub_lease, key=("name",), release="expire")
_KEY = {"name": LEASE_NAME}
RESUMABLE = ("stopped", "interrupted", "failed")


@dataclass(frozen=True, slots=True)
class Item:
    """One stored object to check: its digest, its size as recorded, what it is."""

    digest: str
    size: int
    kind: str  # blob, manifest


# -- the lease -------------------------------------------------------------------


def acquire_lease(conn: Connection, holder: str, now: float, ttl: float) -> bool:
    return lease.take(conn, SCRUB_LEASE, _KEY, holder, now, ttl, {"run_id": None})


def renew_lease(conn: Connection, holder: str, now: float, ttl: float, run_id: int) -> bool:
    return lease.renew(conn, SCRUB_LEASE, _KEY, holder, now, ttl, {"run_id": run_id})


def release_lease(conn: Connection, holder: str) -> None:
    lease.release(conn, SCRUB_LEASE, _KEY, holder, {"run_id": None})


def lease_holder(conn: Connection, now: float) -> str | None:
    return lease.holder_of(conn, SCRUB_LEASE, _KEY, now)


# -- runs --------------------------------------------------------------------------


def _close_dead(conn: Connection, now: float) -> None:
    """Runs left 'running' by a process that died (the caller holds the lease: none
    else runs) are 'interrupted': resumable."""
    conn.execute(
        update(scrub_runs)
        .where(scrub_runs.c.state == "running")
        .values(state="interrupted", finished_at=now)
    )


def resumable(conn: Connection) -> dict[str, Any] | None:
    """The newest run, if it ended before checking everything (stopped, interrupted,
    failed)."""
    row = conn.execute(select(scrub_runs).order_by(scrub_runs.c.id.desc()).limit(1)).first()
    if row is None or row.state not in (*RESUMABLE, "running"):
        return None
    return _run_dict(row)


def start_run(
    conn: Connection, holder: str, trigger: str, rate: int, resume: bool, now: float
) -> int:
    """Record a new run, or (``resume``) take the newest one up again where it stopped
    if it did not finish; its id. The caller holds the lease."""
    _close_dead(conn, now)
    total = count_items(conn)
    if resume:
        found = resumable(conn)
        if found is not None:
            conn.execute(
                update(scrub_runs)
                .where(scrub_runs.c.id == found["id"])
                .values(
                    state="running",
                    finished_at=None,
                    heartbeat_at=now,
                    holder=holder,
                    rate=rate,
                    error=None,
                    total=total,
                )
            )
            return int(found["id"])
    run_id: int = conn.execute(
        insert(scrub_runs)
        .values(
            started_at=now,
            heartbeat_at=now,
            state="running",
            trigger=trigger,
            holder=holder,
            rate=rate,
            cursor="",
            checked=0,
            checked_bytes=0,
            bad=0,
            total=total,
        )
        .returning(scrub_runs.c.id)
    ).scalar_one()
    return run_id


def progress_run(
    conn: Connection,
    run_id: int,
    cursor: str,
    checked: int,
    checked_bytes: int,
    bad: int,
    now: float,
) -> None:
    """Where a run is: the last digest checked and the counts (since it first started)."""
    conn.execute(
        update(scrub_runs)
        .where(scrub_runs.c.id == run_id)
        .values(
            cursor=cursor, checked=checked, checked_bytes=checked_bytes, bad=bad, heartbeat_at=now
        )
    )


def finish_run(conn: Connection, run_id: int, state: str, error: str | None, now: float) -> None:
    conn.execute(
        update(scrub_runs)
        .where(scrub_runs.c.id == run_id)
        .values(state=state, finished_at=now, heartbeat_at=now, error=error)
    )


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "trigger": row.trigger,
        "holder": row.holder,
        "rate": row.rate,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "heartbeat_at": row.heartbeat_at,
        "cursor": row.cursor,
        "checked": row.checked,
        "checked_bytes": row.checked_bytes,
        "bad": row.bad,
        "total": row.total,
        "error": row.error,
    }


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(scrub_runs).where(scrub_runs.c.id == run_id)).first()
    return _run_dict(row) if row is not None else None


def list_runs(conn: Connection, limit: int, before: int | None) -> list[dict[str, Any]]:
    query = select(scrub_runs).order_by(scrub_runs.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(scrub_runs.c.id < before)
    return [_run_dict(r) for r in conn.execute(query)]


def last_scheduled(conn: Connection) -> float | None:
    """When the last scheduled run started (for the schedule)."""
    value = conn.execute(
        select(func.max(scrub_runs.c.started_at)).where(scrub_runs.c.trigger == "schedule")
    ).scalar()
    return float(value) if value is not None else None


# -- what is checked -------------------------------------------------------------


def _items_after(cursor: str) -> Any:
    blob_rows = select(
        blobs.c.digest.label("digest"), blobs.c.size.label("size"), literal("blob").label("kind")
    ).where(blobs.c.digest > cursor)
    manifest_rows = (
        select(
            manifests.c.digest.label("digest"),
            func.max(manifests.c.size).label("size"),
            literal("manifest").label("kind"),
        )
        .where(manifests.c.digest > cursor)
        .group_by(manifests.c.digest)
    )
    return union_all(blob_rows, manifest_rows).subquery()


def next_items(conn: Connection, cursor: str, limit: int) -> list[Item]:
    """The next ``limit`` stored objects after ``cursor``, in digest order (a digest both
    a blob and a manifest comes once, as a manifest)."""
    items = _items_after(cursor)
    rows = conn.execute(select(items).order_by(items.c.digest, items.c.kind).limit(limit * 2))
    found: dict[str, Item] = {}
    for row in rows:
        found[row.digest] = Item(row.digest, int(row.size), row.kind)  # manifest sorts last
    return sorted(found.values(), key=lambda item: item.digest)[:limit]


def count_items(conn: Connection) -> int:
    items = _items_after("")
    return int(
        conn.execute(
            select(func.count(func.distinct(items.c.digest))).select_from(items)
        ).scalar_one()
    )


def exists_item(conn: Connection, digest: str) -> bool:
    """Is ``digest`` still a blob or a manifest (GC may have collected it meanwhile)?"""
    if conn.execute(select(blobs.c.digest).where(blobs.c.digest == digest)).first():
        return True
    return (
        conn.execute(select(manifests.c.id).where(manifests.c.digest == digest)).first() is not None
    )


def repositories_of(conn: Connection, digest: str, limit: int = 100) -> list[str]:
    """Repositories that hold ``digest`` (as a blob or a manifest), for the report."""
    linked = (
        select(repositories.c.name)
        .join(repository_blobs, repository_blobs.c.repository_id == repositories.c.id)
        .where(repository_blobs.c.digest == digest)
    )
    listed = (
        select(repositories.c.name)
        .join(manifests, manifests.c.repository_id == repositories.c.id)
        .where(manifests.c.digest == digest)
    )
    names = {str(n) for n in conn.execute(linked.union(listed).limit(limit)).scalars()}
    return sorted(names)


def quarantine_item(
    conn: Connection,
    item: Item,
    reason: str,
    detail: str | None,
    now: float,
    record: Record | None = None,
) -> tuple[bool, list[str]]:
    """Quarantine ``item`` if it is still stored (not collected meanwhile); whether it
    is newly quarantined, and the repositories holding it. Newly quarantined, with
    ``record``: a ``scrub_bad`` event per repository, in the same transaction."""
    if not exists_item(conn, item.digest):
        return False, []
    new = quarantine.quarantine(conn, item.digest, reason, item.kind, now, detail)
    names = repositories_of(conn, item.digest)
    if new and record is not None:
        target: dict[str, object] = {
            "digest": item.digest,
            "kind": item.kind,
            "size": item.size,
            "reason": reason,
            "detail": detail,
        }
        for name in names:
            record(conn, EVENT, name, {**target, "repository": name}, None)
    return new, names


def release_item(conn: Connection, digest: str) -> bool:
    """The bytes of a quarantined digest checked good (put back by an operator)."""
    return quarantine.release(conn, digest)


def quarantined(conn: Connection, limit: int, after: str) -> dict[str, Any]:
    items = quarantine.listing(conn, limit, after)
    return {
        "quarantined": [
            {**q.as_dict(), "repositories": repositories_of(conn, q.digest, 20)} for q in items
        ],
        "total": quarantine.count(conn),
    }


def quarantined_among(conn: Connection, digests: list[str]) -> set[str]:
    """Which of ``digests`` are in quarantine."""
    if not digests:
        return set()
    return set(
        conn.execute(
            select(blob_quarantine.c.digest).where(blob_quarantine.c.digest.in_(digests))
        ).scalars()
    )
