"""The background loop helper (registry/periodic.py) and the loops built on it (the
upload purger, the LDAP group refresh), on a fake clock: nothing here sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from auth.ldap import LdapDirectory, LdapOptions
from auth.ldap_cache import LdapAuthenticator
from registry.accounts.setup import ldap_refresher
from registry.periodic import Periodic
from registry.service.purge import UploadPurger
from storage.memory import InMemoryDriver
from storage.uploads import UploadStore

log = logging.getLogger("wharf.test.periodic")


class FakeTime:
    """A clock moved only by the loop's sleeps; the ``limit``-th sleep ends the loop
    (a cancellation, as a shutdown would)."""

    def __init__(self, limit: int = 10, now: float = 1_000_000.0) -> None:
        self.now = now
        self.limit = limit
        self.sleeps: list[float] = []
        self.events: list[str] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.events.append(f"sleep {seconds:g}")
        if len(self.sleeps) >= self.limit:
            raise asyncio.CancelledError
        self.now += seconds


def high(low: float, high: float) -> float:  # a random draw at its upper bound
    return high


async def test_interval_runs_after_each_wait() -> None:
    t = FakeTime(limit=4)

    async def job() -> None:
        t.events.append(f"job at {t.now - 1_000_000:g}")

    p = Periodic("tick", job, log, interval=10.0, clock=t.clock, sleep=t.sleep)
    with pytest.raises(asyncio.CancelledError):
        await p.run()
    # the first run one interval after the start (the default), then one every interval
    assert t.events == [
        "sleep 10",
        "job at 10",
        "sleep 10",
        "job at 20",
        "sleep 10",
        "job at 30",
        "sleep 10",
    ]
    assert p.runs == 3 and p.failures == 0


async def test_first_delay_and_jitter_are_drawn_from_their_ranges() -> None:
    t = FakeTime(limit=3)
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    async def job() -> None:
        pass

    p = Periodic(
        "tick",
        job,
        log,
        interval=100.0,
        first=(5.0, 50.0),
        jitter=(0.5, 1.5),
        sleep=t.sleep,
        uniform=uniform,
    )
    with pytest.raises(asyncio.CancelledError):
        await p.run()
    assert draws == [(5.0, 50.0), (50.0, 150.0), (50.0, 150.0)]
    assert t.sleeps == [5.0, 50.0, 50.0]


async def test_a_failing_job_is_logged_counted_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime(limit=4)
    registry = CollectorRegistry()
    counter = PromCounter("wharf_test_failures", "failures", registry=registry)
    seen: list[Exception] = []
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls != 2:
            raise RuntimeError(f"broken {calls}")

    p = Periodic(
        "the test loop",
        job,
        log,
        interval=1.0,
        errors=counter,
        on_error=seen.append,
        sleep=t.sleep,
    )
    with caplog.at_level(logging.ERROR, logger=log.name), pytest.raises(asyncio.CancelledError):
        await p.run()
    assert calls == 3 and p.runs == 3 and p.failures == 2
    assert [str(e) for e in seen] == ["broken 1", "broken 3"]
    assert registry.get_sample_value("wharf_test_failures_total") == 2.0
    failed = [r for r in caplog.records if r.name == log.name]
    assert [r.getMessage() for r in failed] == ["the test loop failed"] * 2
    assert all(r.exc_info is not None for r in failed)  # with the traceback


async def test_a_labelled_counter_child_counts_too() -> None:
    registry = CollectorRegistry()
    counter = PromCounter("wharf_test_loops", "failures", ["loop"], registry=registry)

    async def job() -> None:
        raise ValueError("no")

    p = Periodic("x", job, log, interval=1.0, errors=counter.labels("x"))
    assert await p.run_once() is False
    assert registry.get_sample_value("wharf_test_loops_total", {"loop": "x"}) == 1.0


async def test_cancellation_is_never_swallowed() -> None:
    t = FakeTime()

    async def job() -> None:
        raise asyncio.CancelledError

    p = Periodic("tick", job, log, interval=1.0, sleep=t.sleep)
    with pytest.raises(asyncio.CancelledError):
        await p.run()
    assert t.sleeps == [1.0] and p.failures == 0


async def test_schedule_runs_at_each_due_time_reading_the_clock_again() -> None:
    t = FakeTime(limit=8, now=0.0)
    ran: list[tuple[float, float | None]] = []

    def next_time(now: float) -> float:  # every 1000 s, on the thousand
        return (now // 1000 + 1) * 1000

    p: Periodic

    async def job() -> None:
        ran.append((t.now, p.due))

    p = Periodic(
        "cron",
        job,
        log,
        next_time=next_time,
        step=400.0,
        spread=7.0,
        clock=t.clock,
        sleep=t.sleep,
        uniform=high,
    )
    with pytest.raises(asyncio.CancelledError):
        await p.run()
    # 400 + 400 (a step each: the clock is read again), then the rest plus the spread
    assert t.sleeps[:3] == [400.0, 400.0, 207.0]
    assert ran[0] == (1007.0, 1000.0)
    assert ran[1] == (2007.0, 2000.0)  # the next due time after the run, not 1000 again
    assert p.due is None  # only set while a job runs


async def test_schedule_follows_a_clock_set_forward() -> None:
    t = FakeTime(limit=3, now=0.0)
    ran: list[float] = []

    async def job() -> None:
        ran.append(t.now)

    def next_time(now: float) -> float:
        return (now // 1000 + 1) * 1000

    async def sleep(seconds: float) -> None:
        await t.sleep(seconds)
        if len(t.sleeps) == 1:
            t.now = 1990.0  # the host slept, or its clock was set

    p = Periodic("cron", job, log, next_time=next_time, step=400.0, clock=t.clock, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await p.run()
    assert t.sleeps[:2] == [400.0, 10.0] and ran == [2000.0]


def test_an_interval_or_a_schedule_is_required() -> None:
    async def job() -> None:
        pass

    with pytest.raises(ValueError):
        Periodic("x", job, log)
    with pytest.raises(ValueError):
        Periodic("x", job, log, interval=1.0, next_time=lambda now: now + 1)
    with pytest.raises(ValueError):
        Periodic("x", job, log, interval=0.0)


async def test_start_and_stop() -> None:
    runs = 0
    started = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            started.set()
        await asyncio.sleep(0)

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    p = Periodic("the-loop", job, log, interval=60.0, sleep=no_wait)
    task = p.start()
    assert task.get_name() == "the-loop" and p.start() is task  # started once
    await asyncio.wait_for(started.wait(), 5)
    await p.stop()
    assert task.cancelled()
    done = runs
    await asyncio.sleep(0)
    assert runs == done  # no run after stop
    await p.stop()  # stopping again is harmless
    p.cancel()


# -- the loops built on it ----------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "first"),
    [(86400.0, 3600.0), (600.0, 600.0)],  # up to an hour, or the interval if shorter
)
async def test_the_upload_purge_schedule(interval: float, first: float) -> None:
    t = FakeTime(limit=3)
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    purger = UploadPurger(UploadStore(InMemoryDriver()), 3600.0, interval, False, clock=t.clock)
    with pytest.raises(asyncio.CancelledError):
        await purger.periodic(sleep=t.sleep, uniform=uniform).run()
    jittered = (interval * 0.9, interval * 1.1)
    assert draws == [(0.0, first), jittered, jittered]


async def test_a_failed_upload_purge_is_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = FakeTime(limit=3)
    purger = UploadPurger(UploadStore(InMemoryDriver()), 3600.0, 60.0, False)

    async def broken(cutoff: float, dry_run: bool = False) -> list[str]:
        raise OSError("disk gone")

    monkeypatch.setattr(purger.uploads, "purge", broken)
    with (
        caplog.at_level(logging.ERROR, logger="wharf.purge"),
        pytest.raises(asyncio.CancelledError),
    ):
        await purger.periodic(sleep=t.sleep).run()
    messages = [r.getMessage() for r in caplog.records if r.name == "wharf.purge"]
    assert messages == ["upload purge failed", "upload purge failed"]


async def test_the_ldap_refresh_schedule(caplog: pytest.LogCaptureFixture) -> None:
    directory = LdapDirectory(LdapOptions(urls=("ldap://127.0.0.1:9",), binddn="cn=svc"))
    ldap = LdapAuthenticator(directory, refresh=120.0)
    t = FakeTime(limit=4)
    calls = 0

    async def refresh_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("directory said no")
        return 0

    ldap.refresh_once = refresh_once  # type: ignore[method-assign]
    try:
        with (
            caplog.at_level(logging.ERROR, logger="wharf.auth"),
            pytest.raises(asyncio.CancelledError),
        ):
            refresher = ldap_refresher(ldap, sleep=t.sleep)
            assert refresher is not None
            await refresher.run()
    finally:
        ldap.close()
    # the first refresh one interval after the start, then every interval, no jitter
    assert t.sleeps == [120.0] * 4 and calls == 3
    assert [r.getMessage() for r in caplog.records if r.name == "wharf.auth"] == [
        "LDAP group refresh failed"
    ]


async def test_no_ldap_refresh_without_a_service_account() -> None:
    directory = LdapDirectory(LdapOptions(urls=("ldap://127.0.0.1:9",)))
    ldap = LdapAuthenticator(directory, refresh=120.0)
    try:
        assert ldap_refresher(ldap) is None
    finally:
        ldap.close()
