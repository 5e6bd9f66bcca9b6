"""SQL of the GC lease (issue #7): one run at a time across all processes and nodes.

The lease is the one row ``gc`` of ``gc_lease``, taken, renewed and released by the
shared lease functions (``registry.meta.lease``; taking is race-free by itself). Its
``run_id`` names the run holding it: pushes read it (:func:`live_holder`) to tell a
live run's doomed digests from a dead one's. Released, the row stays, expired (the
expiry 0, the run NULL; the holder column is not nullable and keeps the last holder).
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from registry.gc.tables import gc_lease
from registry.meta import lease

LEASE_NAME = "gc"
GC_LEASE = lease.LeaseTable(gc_lease, key=("name",), release="expire")
_KEY = {"name": LEASE_NAME}


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
    ``dead``, a holder known to have died); no run is named until :func:`renew_lease`."""
    return lease.take(conn, GC_LEASE, _KEY, holder, now, ttl, {"run_id": None}, dead=dead)


def renew_lease(conn: Connection, holder: str, now: float, ttl: float, run_id: int | None) -> bool:
    """Extend ``holder``'s lease (and name its run); False if it lost it."""
    return lease.renew(conn, GC_LEASE, _KEY, holder, now, ttl, {"run_id": run_id})


def release_lease(conn: Connection, holder: str) -> None:
    lease.release(conn, GC_LEASE, _KEY, holder, {"run_id": None})


def lease_holder(conn: Connection, now: float) -> str | None:
    return lease.holder_of(conn, GC_LEASE, _KEY, now)
