"""The replication scheduler's loops and rule leases (replicator/scheduler.py, store.py)
on a fake clock: a tick now and then every ``TICK``, a failed tick logged and the loop
going on; a running rule's lease renewed every ``LEASE / 4``, given up when the run ends,
and a dead holder's lease expiring after ``LEASE``. Nothing here sleeps for time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from registry.config import ReplicationRuleSettings
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from replicator.scheduler import LEASE, TICK, Scheduler
from replicator.store import ReplicationStore
from tests.support.clock import T0


class FakeTime:
    """A clock moved by the loops' sleeps; the ``limit``-th sleep ends the loop."""

    def __init__(self, limit: int = 4) -> None:
        self.now = T0
        self.limit = limit
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.limit:
            raise asyncio.CancelledError
        self.now += seconds


class NoRules:
    async def current(self) -> dict[str, ReplicationRuleSettings]:
        return {}


def _scheduler(store: ReplicationStore, t: FakeTime) -> Scheduler:
    rules: Any = NoRules()
    local: Any = None
    return Scheduler(rules, local, store, sleep=t.sleep)


async def test_a_rules_lease_on_the_stores_clock(db: Database) -> None:
    t = FakeTime()
    store = ReplicationStore(db, t)
    assert await store.acquire("r", "w1", LEASE)
    assert not await store.acquire("r", "w2", LEASE)
    t.now += LEASE - 1
    assert not await store.acquire("r", "w2", LEASE)
    assert await store.acquire("r", "w1", LEASE)  # extended from now
    t.now += LEASE - 1
    assert not await store.acquire("r", "w2", LEASE)
    t.now += 2  # w1 died: its lease ran out
    assert await store.acquire("r", "w2", LEASE)
    await store.release("r", "w1")  # not w1's any more: nothing happens
    assert not await store.acquire("r", "w3", LEASE)
    await store.release("r", "w2")
    assert await store.acquire("r", "w3", LEASE)  # free at once


async def test_ticks_now_then_every_tick_a_failed_one_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    try:
        t = FakeTime(limit=4)
        scheduler = _scheduler(ReplicationStore(db, t), t)
        assert scheduler.clock is t  # the store's clock
        ticks: list[float] = []
        tick = scheduler.tick

        async def counting() -> None:
            ticks.append(t.now - T0)
            if len(ticks) == 2:
                raise RuntimeError("database away")
            await tick()

        scheduler.tick = counting  # type: ignore[method-assign]
        running = asyncio.create_task(asyncio.Event().wait())
        scheduler._running["r"] = running
        with pytest.raises(asyncio.CancelledError):
            await scheduler.run_forever()
        assert t.sleeps == [0.0, TICK, TICK, TICK]
        assert ticks == [0.0, 1.0, 2.0]  # the failed tick did not stop the loop
        assert "replication scheduler tick failed" in caplog.text
        await asyncio.wait([running])
        assert running.cancelled()  # the runs under way stop with the scheduler
    finally:
        await db.close()


async def test_a_running_rules_lease_is_renewed(db: Database) -> None:
    t = FakeTime(limit=5)
    store = ReplicationStore(db, t)
    scheduler = _scheduler(store, t)
    assert await store.acquire("r", scheduler.holder, LEASE)  # expires at T0 + 60
    acquire = store.acquire
    calls: list[float] = []

    async def flaky(rule: str, holder: str, ttl: float) -> bool:
        calls.append(t.now - T0)
        if len(calls) == 2:
            raise RuntimeError("database away")
        return await acquire(rule, holder, ttl)

    store.acquire = flaky  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await scheduler.renewal("r").run()
    store.acquire = acquire  # type: ignore[method-assign]
    assert t.sleeps == [LEASE / 4] * 5
    assert calls == [15.0, 30.0, 45.0, 60.0]  # a failed renewal: the next comes as due
    t.now = T0 + 60 + LEASE - 1  # renewed at T0 + 60 last
    assert not await store.acquire("r", "other", LEASE)
    t.now += 2  # the holder died: no more renewals, the lease runs out
    assert await store.acquire("r", "other", LEASE)


async def test_a_run_takes_the_lease_and_gives_it_up(db: Database) -> None:
    t = FakeTime()
    store = ReplicationStore(db, t)
    scheduler = _scheduler(store, t)
    rule = ReplicationRuleSettings.model_validate(
        {"name": "r", "remote": {"url": "x"}, "onpush": True}
    )
    pending = store.pending
    looked: list[str] = []

    async def noting(name: str, limit: int = 500) -> Any:
        looked.append(name)
        assert not await store.acquire(name, "other", LEASE)  # held while it runs
        return await pending(name, limit)

    store.pending = noting  # type: ignore[method-assign]
    assert await store.acquire("r", "other", LEASE)
    await scheduler._run(rule, "onpush", None)
    assert looked == []  # another holds the rule: nothing done
    await store.release("r", "other")
    await scheduler._run(rule, "onpush", None)  # nothing pending: done at once
    assert looked == ["r"]
    assert await store.acquire("r", "other", LEASE)  # given up, not left to expire
