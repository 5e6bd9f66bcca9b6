"""SQL of the GC lease (issue #7): one run at a time across all processes and nodes."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from registry.gc.store_locks import lock
from registry.gc.tables import gc_lease

LEASE_NAME = "gc"


def live_holder(conn: Connection, now: float) -> int | None:
    """The run holding an unexpired lease, if any."""
    row = conn.execute(
        select(gc_lease.c.run_id, gc_lease.c.expires_at).where(gc_lease.c.name == LEASE_NAME)
    ).first()
    if row is None or row.expires_at <= now:
        return None
    return int(row.run_id) if row.run_id is not None else None


def acquire_lease(
    conn: Connection, holder: str, now: float, ttl: float, dead: str | None = None
) -> bool:
    """Take the GC lease if it is free or expired (or already ``holder``'s, or held by
    ``dead``, a holder known to have died)."""
    lock(conn, [LEASE_NAME], shared=False)
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
