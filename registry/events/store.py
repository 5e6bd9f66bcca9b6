"""The event outbox's SQL: writing events with their deliveries, each endpoint's lease and
state, the queue's batches, dead events, replay and pruning (tables in
:mod:`registry.events.tables`).

Every function takes a synchronous ``Connection`` and runs through ``Database``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, or_, select, update

from registry.events.tables import event_deliveries, event_endpoints, event_outbox
from registry.meta import queries as q
from registry.meta.lease import LeaseTable

PENDING, DEAD = "pending", "dead"

# Who sends for an endpoint now (:mod:`registry.meta.lease`): the lease columns of its
# state row. Releasing empties them (the row keeps its counters); taking makes no row
# (:func:`ensure_endpoints` does, with the counters).
ENDPOINT_LEASES = LeaseTable(
    event_endpoints,
    ("name",),
    holder="lease_owner",
    expires="lease_until",
    release="expire",
    creates=False,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without a zone: they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write: its JSON body and the endpoints it goes to."""

    event_id: str
    created_at: datetime
    action: str
    repository: str
    body: str
    endpoints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pending:
    """An event waiting for one endpoint."""

    seq: int
    body: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EndpointState:
    """What ``event_endpoints`` knows about one endpoint."""

    name: str
    lease_owner: str | None
    lease_until: datetime | None
    failures: int
    paused_until: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    delivered: int


def insert_events(conn: Connection, events: Sequence[NewEvent]) -> list[int]:
    """Write events and their pending deliveries; returns their ``seq``."""
    seqs: list[int] = []
    rows: list[dict[str, Any]] = []
    for ev in events:
        result = conn.execute(
            insert(event_outbox).values(
                event_id=ev.event_id,
                created_at=ev.created_at,
                action=ev.action,
                repository=ev.repository,
                body=ev.body,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        seq = int(key[0])
        seqs.append(seq)
        rows += [
            {
                "endpoint": name,
                "seq": seq,
                "status": PENDING,
                "attempts": 0,
                "created_at": ev.created_at,
            }
            for name in ev.endpoints
        ]
    if rows:
        conn.execute(insert(event_deliveries), rows)
    return seqs


def ensure_endpoints(conn: Connection, names: Sequence[str]) -> None:
    """Create the state rows of configured endpoints that have none yet."""
    rows = [{"name": n, "failures": 0, "delivered": 0} for n in names]
    if rows:
        conn.execute(q.insert_ignore(event_endpoints, conn.dialect.name), rows)


def _state(row: Any) -> EndpointState:
    return EndpointState(
        name=row.name,
        lease_owner=row.lease_owner,
        lease_until=_aware(row.lease_until),
        failures=row.failures,
        paused_until=_aware(row.paused_until),
        last_success=_aware(row.last_success),
        last_error=row.last_error,
        last_error_at=_aware(row.last_error_at),
        delivered=row.delivered,
    )


def endpoint_state(conn: Connection, name: str) -> EndpointState | None:
    row = conn.execute(select(event_endpoints).where(event_endpoints.c.name == name)).first()
    return _state(row) if row is not None else None


def pending_batch(conn: Connection, name: str, limit: int) -> list[Pending]:
    """The oldest ``limit`` pending events of an endpoint, in order."""
    d, o = event_deliveries.c, event_outbox.c
    rows = conn.execute(
        select(d.seq, o.body, d.attempts, d.created_at)
        .select_from(event_deliveries.join(event_outbox, o.seq == d.seq))
        .where(d.endpoint == name, d.status == PENDING)
        .order_by(d.seq)
        .limit(limit)
    )
    return [Pending(r.seq, r.body, r.attempts, _aware(r.created_at) or _now()) for r in rows]


def delivered(conn: Connection, name: str, seqs: Sequence[int]) -> None:
    """Events ``seqs`` reached endpoint ``name``: forget them, record the success."""
    d, t = event_deliveries.c, event_endpoints.c
    conn.execute(delete(event_deliveries).where(d.endpoint == name, d.seq.in_(list(seqs))))
    conn.execute(
        update(event_endpoints)
        .where(t.name == name)
        .values(
            failures=0,
            paused_until=None,
            last_success=_now(),
            delivered=t.delivered + len(seqs),
        )
    )


def failed(
    conn: Connection,
    name: str,
    seqs: Sequence[int],
    error: str,
    pause_for: float,
    maxattempts: int,
    maxage: float,
) -> tuple[int, int]:
    """A send of ``seqs`` failed: count the attempt, park events past ``maxattempts`` or
    older than ``maxage`` seconds as dead, pause the endpoint for ``pause_for`` seconds.
    Returns (consecutive failures, events parked dead)."""
    now = _now()
    d, t = event_deliveries.c, event_endpoints.c
    mine = and_(d.endpoint == name, d.seq.in_(list(seqs)), d.status == PENDING)
    conn.execute(
        update(event_deliveries)
        .where(mine)
        .values(attempts=d.attempts + 1, failed_at=now, last_error=error[:2000])
    )
    limits = []
    if maxattempts > 0:
        limits.append(d.attempts >= maxattempts)
    if maxage > 0:
        limits.append(d.created_at < now - timedelta(seconds=maxage))
    parked = 0
    if limits:
        parked = conn.execute(
            update(event_deliveries).where(mine, or_(*limits)).values(status=DEAD)
        ).rowcount
    conn.execute(
        update(event_endpoints)
        .where(t.name == name)
        .values(
            failures=t.failures + 1,
            last_error=error[:2000],
            last_error_at=now,
            paused_until=now + timedelta(seconds=pause_for),
        )
    )
    failures: int = conn.execute(select(t.failures).where(t.name == name)).scalar_one_or_none() or 0
    return failures, int(parked or 0)


def queue_stats(conn: Connection, name: str) -> dict[str, Any]:
    """Pending and dead counts and the oldest pending event's time, for one endpoint."""
    d = event_deliveries.c
    counts: dict[str, int] = {
        row[0]: row[1]
        for row in conn.execute(
            select(d.status, func.count()).where(d.endpoint == name).group_by(d.status)
        )
    }
    oldest = conn.execute(
        select(func.min(d.created_at)).where(d.endpoint == name, d.status == PENDING)
    ).scalar()
    return {
        "pending": int(counts.get(PENDING, 0)),
        "dead": int(counts.get(DEAD, 0)),
        "oldest_pending": _aware(oldest),
    }


def endpoint_status(conn: Connection, name: str) -> tuple[dict[str, Any], EndpointState | None]:
    """Queue counts, then the endpoint's state: read in this order, a queue seen empty
    comes with the state its last delivery left (both are written in one transaction)."""
    return queue_stats(conn, name), endpoint_state(conn, name)


def dead_events(conn: Connection, name: str | None, after: int, limit: int) -> list[dict[str, Any]]:
    """Dead deliveries (of one endpoint or all) after ``seq`` ``after``, oldest first."""
    d, o = event_deliveries.c, event_outbox.c
    query = (
        select(d.endpoint, d.seq, d.attempts, d.failed_at, d.last_error, o.body)
        .select_from(event_deliveries.join(event_outbox, o.seq == d.seq))
        .where(d.status == DEAD, d.seq > after)
        .order_by(d.seq, d.endpoint)
        .limit(limit)
    )
    if name is not None:
        query = query.where(d.endpoint == name)
    return [
        {
            "endpoint": r.endpoint,
            "seq": r.seq,
            "attempts": r.attempts,
            "failed_at": _aware(r.failed_at),
            "error": r.last_error,
            "body": r.body,
        }
        for r in conn.execute(query)
    ]


def requeue_dead(conn: Connection, name: str | None, seqs: Sequence[int] | None) -> int:
    """Make dead deliveries pending again (all, or those of ``seqs``); returns how many.
    They go out before newer events (delivery is in ``seq`` order)."""
    d = event_deliveries.c
    query = update(event_deliveries).where(d.status == DEAD)
    if name is not None:
        query = query.where(d.endpoint == name)
    if seqs is not None:
        query = query.where(d.seq.in_(list(seqs)))
    result = conn.execute(query.values(status=PENDING, attempts=0))
    return int(result.rowcount or 0)


def list_events(conn: Connection, after: int, limit: int) -> list[tuple[int, str]]:
    """Events after ``seq`` ``after`` still in the outbox, oldest first: (seq, body)."""
    o = event_outbox.c
    rows = conn.execute(select(o.seq, o.body).where(o.seq > after).order_by(o.seq).limit(limit))
    return [(r.seq, r.body) for r in rows]


def prune(conn: Connection, older_than: float) -> int:
    """Delete events older than ``older_than`` seconds that no endpoint still needs."""
    o, d = event_outbox.c, event_deliveries.c
    cutoff = _now() - timedelta(seconds=older_than)
    result = conn.execute(
        delete(event_outbox).where(o.created_at < cutoff, ~exists().where(d.seq == o.seq))
    )
    return int(result.rowcount or 0)
