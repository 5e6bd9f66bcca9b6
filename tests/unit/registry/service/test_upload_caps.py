"""The caps on open upload sessions and the upload purge, on a clock the test moves:
a real SQLite database and the in-memory storage driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.errors import TooManyRequests
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.store import MetadataStore
from registry.meta.uploads import NO_EXPIRY
from registry.service.purge import UploadPurger
from registry.service.uploads import UploadLimits, UploadService
from storage.memory import InMemoryDriver
from storage.uploads import UploadStore

AGE = 3600.0
LIMITS = UploadLimits(per_repository=3, per_caller=2, expire_after=AGE)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    service: UploadService
    store: UploadStore
    clock: Clock

    def purger(self, age: float = AGE, dry_run: bool = False) -> UploadPurger:
        return UploadPurger(self.store, age, 60.0, dry_run, clock=self.clock)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    db = Database(url, 2)
    clock, store = Clock(), UploadStore(InMemoryDriver())
    try:
        yield Setup(UploadService(MetadataStore(db), store, clock=clock), store, clock)
    finally:
        await db.close()


async def refused(service: UploadService, caller: str, limits: UploadLimits = LIMITS) -> str:
    with pytest.raises(TooManyRequests) as err:
        await service.open("repo", caller, limits)
    assert err.value.headers["Retry-After"] == "10"
    scope: str = err.value.detail["scope"]
    return scope


async def test_the_purge_frees_the_slots_of_abandoned_sessions(setup: Setup) -> None:
    service = setup.service
    abandoned = [await service.open("repo", "user:ann", LIMITS) for _ in range(2)]
    assert await refused(service, "user:ann") == "caller"
    assert await setup.purger().run_once() == []  # not old enough yet
    setup.clock.now += AGE - 1
    assert await setup.purger().run_once() == []
    assert await refused(service, "user:ann") == "caller"
    setup.clock.now += 10  # past the age, whatever time the openings took
    # a dry run purges nothing: the sessions stay, and count while the purge is dry
    dry = UploadLimits(3, 2, expire_after=None)
    assert sorted(await setup.purger(dry_run=True).run_once()) == sorted(abandoned)
    assert sorted(await setup.store.ids()) == sorted(abandoned)
    assert await refused(service, "user:ann", dry) == "caller"
    assert sorted(await setup.purger().run_once()) == sorted(abandoned)
    assert await setup.store.ids() == []
    fresh = [await service.open("repo", "user:ann", LIMITS) for _ in range(2)]
    assert await refused(service, "user:ann") == "caller"
    assert sorted(await setup.store.ids()) == sorted(fresh)


async def test_sessions_purged_by_another_age_free_their_slots_too(setup: Setup) -> None:
    # never expire here, but a purge with its own age (a GC run's) takes them from storage
    limits = UploadLimits(3, 2, expire_after=None)
    service = setup.service
    for caller in ("user:ann", "user:ann", "user:ben"):
        await service.open("repo", caller, limits)
    assert await refused(service, "user:ben", limits) == "repository"
    setup.clock.now += 60
    assert len(await setup.purger(age=30).run_once()) == 3
    await service.open("repo", "user:ben", limits)
    await service.open("repo", "user:ben", limits)
    assert await refused(service, "user:ben", limits) == "caller"


async def test_finishing_and_cancelling_give_slots_back(setup: Setup) -> None:
    service = setup.service
    first = await service.open("repo", "addr:192.0.2.1", LIMITS)
    second = await service.open("repo", "addr:192.0.2.1", LIMITS)
    await refused(service, "addr:192.0.2.1")
    await service.cancel("repo", first)
    third = await service.open("repo", "addr:192.0.2.1", LIMITS)
    await refused(service, "addr:192.0.2.1")
    assert sorted(await setup.store.ids()) == sorted([second, third])


async def test_concurrent_openings_get_the_slots_and_no_more(setup: Setup) -> None:
    service = setup.service
    results = await asyncio.gather(
        *(service.open("repo", f"user:{u}", LIMITS) for u in ["ann"] * 5 + ["ben"] * 5),
        return_exceptions=True,
    )
    opened = [r for r in results if isinstance(r, str)]
    assert len(opened) == 3
    assert all(isinstance(r, TooManyRequests) for r in results if not isinstance(r, str))
    assert sorted(await setup.store.ids()) == sorted(opened)  # the losers left nothing


async def test_the_opening_transaction_counts_what_the_ones_before_it_recorded(
    setup: Setup,
) -> None:
    # SQLite commits concurrent writes together: each must see the rows before it
    sessions, now = setup.service.sessions, setup.clock()
    callers = ["user:ann"] * 5 + ["user:ben"] * 5
    found = await asyncio.gather(
        *(
            sessions.open(f"s{i}", "repo", c, LIMITS.caps, now, NO_EXPIRY)
            for i, c in enumerate(callers)
        )
    )
    scopes = [None if f is None else f.scope for f in found]
    assert scopes == [None, None, *["caller"] * 3, None, *["repository"] * 4]


async def test_no_caps_no_rows(setup: Setup) -> None:
    unlimited = UploadLimits(0, 0, expire_after=AGE)
    opened = [await setup.service.open("repo", "user:ann", unlimited) for _ in range(5)]
    assert len(set(opened)) == 5
    # sessions opened without caps do not count once caps are set
    assert await setup.service.open("repo", "user:ann", LIMITS)
