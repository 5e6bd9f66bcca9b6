"""Event delivery's lease and loops (registry/events/dispatcher.py) on a fake clock: one
process at a time sends for an endpoint, renewing its lease only when it runs short; a
dead sender's lease expires and another takes over; a clean stop frees it at once; the
outbox pruning runs every ``PRUNE_EVERY`` seconds. Nothing here sleeps for time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, select

from registry.config import NotificationEndpointSettings
from registry.events import store as outbox
from registry.events.dispatcher import (
    IDLE_POLL,
    PRUNE_EVERY,
    STANDBY_POLL,
    Dispatcher,
    EndpointWorker,
)
from registry.events.metrics import EventMetrics
from registry.events.sender import Outcome, Sender
from registry.events.tables import event_endpoints
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from tests.support.clock import T0, Clock

ENDPOINT = NotificationEndpointSettings(name="hook", url="http://receiver.invalid/")  # 1s timeout


class FakeSender:
    """Accepts every batch, noting the seqs each worker sent."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, batch: Sequence[outbox.Pending]) -> Outcome:
        self.sent += [p.seq for p in batch]
        return Outcome(len(batch))


def _worker(db: Database, owner: str, clock: Clock, metrics: EventMetrics) -> EndpointWorker:
    sender: Any = FakeSender()
    return EndpointWorker(db, ENDPOINT, sender, metrics, owner, clock)


async def _event(db: Database, event_id: str) -> int:
    new = outbox.NewEvent(event_id, datetime.now(UTC), "push", "a/b", "{}", ("hook",))
    seqs = await db.run_write(outbox.insert_events, [new])
    return seqs[0]


def _lease_row(conn: Connection) -> tuple[str | None, float | None]:
    t = event_endpoints.c
    row = conn.execute(select(t.lease_owner, t.lease_until).where(t.name == "hook")).one()
    until = row.lease_until
    if until is not None and until.tzinfo is None:  # SQLite keeps no zone: written in UTC
        until = until.replace(tzinfo=UTC)
    return row.lease_owner, until.timestamp() if until is not None else None


async def test_one_sender_at_a_time_renewed_when_short_taken_over_when_dead(db: Database) -> None:
    clock = Clock()
    metrics = EventMetrics(CollectorRegistry())
    a, b = _worker(db, "a", clock, metrics), _worker(db, "b", clock, metrics)
    assert a.lease_seconds == 7.0  # the 1 s send timeout and twice the margin

    # no state row yet: the worker makes it, then goes on at once
    assert await a.step() == (0, False)
    first = await _event(db, "e1")
    assert await a.step() == (0, False)  # took the lease, sent the event
    assert a.holding and a.sender.sent == [first]  # type: ignore[attr-defined]
    assert await db.run_read(_lease_row) == ("a", T0 + 7)
    assert await b.step() == (STANDBY_POLL, False)  # a sends for the endpoint
    assert not b.holding

    clock.now += 2  # 5 s left: enough for a send, the lease is not written
    assert await a.step() == (IDLE_POLL, True)
    assert await db.run_read(_lease_row) == ("a", T0 + 7)
    clock.now += 1.5  # 3.5 s left, less than a send and the margin: renewed
    assert await a.step() == (IDLE_POLL, True)
    assert await db.run_read(_lease_row) == ("a", T0 + 3.5 + 7)

    # a dies: its lease runs out and b takes the endpoint over, from the next event on
    clock.now += 6.5
    assert await b.step() == (STANDBY_POLL, False)  # not yet expired
    clock.now += 1
    second = await _event(db, "e2")
    assert await b.step() == (0, False)
    assert b.holding and b.sender.sent == [second]  # type: ignore[attr-defined]
    assert await db.run_read(_lease_row) == ("b", clock.now + 7)
    assert await a.step() == (STANDBY_POLL, False)  # a, back, has lost it
    assert not a.holding
    await a.release()  # not a's: nothing happens
    assert (await db.run_read(_lease_row))[0] == "b"

    # a clean stop gives it up: a takes it at once, not after the expiry
    await b.release()
    assert await db.run_read(_lease_row) == (None, None)
    assert not b.holding
    assert await a.step() == (IDLE_POLL, True)
    assert a.holding and await db.run_read(_lease_row) == ("a", clock.now + 7)


async def test_the_outbox_is_pruned_every_interval(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    clock = Clock()
    metrics = EventMetrics(CollectorRegistry())
    dispatcher = Dispatcher(db, [ENDPOINT], "application/json", metrics, 0.0, clock)
    try:
        worker = dispatcher.workers[0]  # the workers read the dispatcher's clock
        assert worker.clock is clock and worker.lease.clock is clock
        assert isinstance(worker.sender, Sender)
        new = outbox.NewEvent("old", datetime.now(UTC), "push", "a/b", "{}", ())
        await db.run_write(outbox.insert_events, [new])  # no endpoint needs it: prunable
        sleeps: list[float] = []
        pruned: list[int] = []
        prune = dispatcher.prune

        async def counting() -> int:
            pruned.append(await prune())
            return pruned[-1]

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 3:
                raise asyncio.CancelledError

        dispatcher.prune = counting  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await dispatcher.pruning(sleep=sleep).run()
        assert sleeps == [PRUNE_EVERY] * 3  # the first one interval after the start
        assert pruned == [1, 0]
    finally:
        await dispatcher.stop()
        await db.close()
