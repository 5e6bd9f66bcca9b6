"""``gc.schedule`` as an interval or a cron expression: validation, the next run time,
and one scheduled run per cron time across runners sharing a database."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from registry.config import ConfigError, load_settings
from registry.gc import runner as runner_module
from registry.gc import store_runs
from registry.gc.runner import GCRunner
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.schedules import Schedule, next_time, parse_schedule, seconds_until_next
from storage.filesystem import FilesystemDriver


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", Schedule(interval=86400.0)),
        ("1h30m", Schedule(interval=5400.0)),
        ("3600", Schedule(interval=3600.0)),  # a bare number is seconds, as everywhere
        ("10s", Schedule(interval=60.0)),  # at least a minute apart
        ("0 3 * * *", Schedule(cron="0 3 * * *")),
        ("  */15  *  * * 1-5 ", Schedule(cron="*/15 * * * 1-5")),
        ("0 3 * * sun", Schedule(cron="0 3 * * sun")),
    ],
)
def test_an_interval_or_a_cron_expression(text: str, expected: Schedule) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text", ["0 3 * *", "0 3 * * * *", "0 25 * * *", "61 * * * *", "daily", "24 hours", "@daily"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"neither an interval .* nor a 5-field cron"):
        parse_schedule(text)


def test_config_load_validates_the_schedule(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("gc:\n  schedule: '30 2 * * 0'\n")
    assert load_settings(cfg).gc.schedule == "30 2 * * 0"
    cfg.write_text("gc:\n  schedule: 12h\n")
    assert load_settings(cfg).gc.schedule == "12h"
    cfg.write_text("gc:\n  schedule: 7200\n")  # a bare number is seconds
    assert parse_schedule(load_settings(cfg).gc.schedule) == Schedule(interval=7200.0)
    cfg.write_text("gc:\n  schedule: '0 27 * * *'\n")
    with pytest.raises(ConfigError, match=r"gc\.schedule.*'0 27 \* \* \*' is neither"):
        load_settings(cfg)
    cfg.write_text("{}\n")
    env = {"REGISTRY_GC_SCHEDULE": "0 3 * * * *"}
    with pytest.raises(ConfigError, match="5-field cron"):
        load_settings(cfg, env=env)


NOW = datetime(2026, 11, 27, 2, 59, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "now", "due", "seconds"),
    [
        ("0 3 * * *", NOW, datetime(2026, 11, 27, 3, 0, tzinfo=UTC), 30.0),
        # exactly on a time: the next one (a run just started for this one)
        (
            "0 3 * * *",
            NOW.replace(hour=3, minute=0, second=0),
            datetime(2026, 11, 28, 3, tzinfo=UTC),
            86400,
        ),
        (
            "*/15 * * * *",
            NOW.replace(hour=10, minute=7, second=12),
            NOW.replace(hour=10, minute=15, second=0),
            468.0,
        ),
        ("0 3 * * 1", NOW, datetime(2026, 11, 30, 3, 0, tzinfo=UTC), 3 * 86400 + 30),  # Monday
        (
            "0 0 1 * *",
            NOW,
            datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
            4 * 86400 - (2 * 3600 + 59 * 60 + 30),
        ),
        # the expression is in UTC whatever the zone "now" is given in
        (
            "0 3 * * *",
            NOW.astimezone(timezone(timedelta(hours=2))),
            datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
            30.0,
        ),
    ],
)
def test_the_next_run_time(expression: str, now: datetime, due: datetime, seconds: float) -> None:
    assert next_time(expression, now) == due
    assert seconds_until_next(expression, now) == (due, seconds)


async def test_one_scheduled_run_per_cron_time_across_runners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' schedulers (two runners, one database) wake for the same cron time:
    one starts the run; the other sees the lease or the recorded run and starts nothing,
    now or after the run ended. The next cron time gets its own run."""
    monkeypatch.setattr(runner_module, "CRON_RETRY", 0.1)  # busy: look again soon
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    settings = load_settings(cfg)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 2)
    driver = FilesystemDriver(tmp_path / "data")
    runners = [GCRunner(settings, db, driver, []) for _ in range(2)]
    try:

        async def scheduled_runs() -> list[dict[str, object]]:
            runs = await db.run_read(store_runs.list_runs, 100, None)
            return [r for r in runs if r["trigger"] == "schedule"]

        now = datetime.now(UTC)
        due, following = now - timedelta(seconds=1), now + timedelta(hours=1)
        await asyncio.gather(*(r._start_scheduled(due, following) for r in runners))
        for runner in runners:
            await runner.wait()
        first = await scheduled_runs()
        assert len(first) == 1 and first[0]["state"] == "done", first
        # a late waker for the same time, after the run ended: nothing more
        await runners[1]._start_scheduled(due, following)
        await runners[1].wait()
        assert await scheduled_runs() == first
        # the next time: a new run
        await runners[1]._start_scheduled(datetime.now(UTC), following)
        await runners[1].wait()
        assert len(await scheduled_runs()) == 2
    finally:
        await db.close()


async def test_the_cron_loop_sleeps_until_the_time_then_starts_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schedule_cron`` with the clock's answer replaced: the first time is 0.3 s away,
    the ones after an hour away. One scheduled run starts, after the 0.3 s."""
    asked: list[datetime] = []

    def next_in(expression: str, now: datetime) -> tuple[datetime, float]:
        assert expression == "0 3 * * *"
        wait = 0.3 if not asked else 3600.0
        asked.append(now)
        return now + timedelta(seconds=wait), wait

    monkeypatch.setattr(runner_module, "seconds_until_next", next_in)
    monkeypatch.setattr(runner_module, "CRON_JITTER", 0.0)
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    settings = load_settings(cfg)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 2)
    runner = GCRunner(settings, db, FilesystemDriver(tmp_path / "data"), [])
    started = datetime.now(UTC)
    task = asyncio.create_task(runner.schedule_cron("0 3 * * *"))
    try:
        for _ in range(100):
            if len(asked) >= 2:
                break
            await asyncio.sleep(0.05)
        await runner.wait()
        runs = await db.run_read(store_runs.list_runs, 10, None)
        assert [r["trigger"] for r in runs] == ["schedule"]
        assert runs[0]["started_at"] >= (started + timedelta(seconds=0.3)).timestamp()
        assert len(asked) == 2  # now sleeping towards the next time
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.close()


# -- the schedule loops on a fake clock (nothing below sleeps) ----------------------------

T_CRON = datetime(2026, 11, 27, 2, 50, tzinfo=UTC).timestamp()


class FakeTime:
    """A clock moved only by the loops' sleeps; the ``limit``-th sleep ends the loop."""

    def __init__(self, now: float, limit: int) -> None:
        self.now = now
        self.limit = limit
        self.sleeps: list[float] = []
        self.draws: list[tuple[float, float]] = []
        self.pick = "high"  # where in its range a random draw falls

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.limit:
            raise asyncio.CancelledError
        self.now += seconds

    def uniform(self, low: float, high: float) -> float:
        self.draws.append((low, high))
        return high if self.pick == "high" else low


class FakeRuns:
    """The database as the schedule sees it: when the last scheduled run started."""

    def __init__(self) -> None:
        self.last: float | None = None

    async def run_read(self, fn: object, *args: object) -> float | None:
        assert fn is store_runs.last_finished
        return self.last


class Scheduled:
    """A runner whose runs are only recorded (or refused: ``busy``, ``broken``)."""

    def __init__(self, tmp_path: Path, t: FakeTime) -> None:
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
        self.runs = FakeRuns()
        self.t = t
        self.runner = GCRunner(
            load_settings(cfg),
            self.runs,  # type: ignore[arg-type]
            FilesystemDriver(tmp_path / "data"),
            [],
            clock=t.clock,
            sleep=t.sleep,
            uniform=t.uniform,
        )
        self.started: list[float] = []
        self.tries: list[float] = []
        self.busy = 0  # refuse this many starts (another run holds the lease)
        self.broken = 0  # fail this many starts (the database is away)
        self.runner.start = self.start  # type: ignore[method-assign]

    async def start(self, options: object, trigger: str) -> int:
        assert trigger == "schedule"
        self.tries.append(self.t.now)
        if self.broken:
            self.broken -= 1
            raise RuntimeError("database away")
        if self.busy:
            self.busy -= 1
            raise runner_module.GCRunning("busy")
        self.started.append(self.t.now)
        self.runs.last = self.t.now
        return len(self.started)


async def test_the_interval_loop_on_a_fake_clock(tmp_path: Path) -> None:
    """First look 1 s to a minute after start, then every interval jittered by 0.5-1.0
    (at most 5 minutes); a run only if none was started within 0.9 intervals."""
    t = FakeTime(1_000_000.0, limit=16)
    s = Scheduled(tmp_path, t)
    periodic = s.runner.periodic(Schedule(interval=3600.0))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    assert t.draws[0] == (1.0, 60.0)
    assert set(t.draws[1:]) == {(150.0, 300.0)}  # min(interval, 300) times 0.5 to 1.0
    assert t.sleeps == [60.0] + [300.0] * 15
    # a run at once, the next when 0.9 intervals (3240 s) have passed: 11 looks later
    assert s.started == [1_000_060.0, 1_000_060.0 + 11 * 300]
    assert periodic.failures == 0


async def test_the_interval_loop_with_a_short_interval_and_low_draws(tmp_path: Path) -> None:
    t = FakeTime(1_000_000.0, limit=6)
    t.pick = "low"
    s = Scheduled(tmp_path, t)
    periodic = s.runner.periodic(Schedule(interval=120.0))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    assert t.draws == [(1.0, 60.0)] + [(60.0, 120.0)] * 5
    assert t.sleeps == [1.0] + [60.0] * 5
    # 0.9 intervals are 108 s: every other look (each 60 s apart) starts a run
    assert s.started == [1_000_001.0, 1_000_121.0, 1_000_241.0]


async def test_the_interval_loop_goes_on_when_busy_or_broken(tmp_path: Path) -> None:
    """Another run holding the lease is no error; a start that fails is logged, counted,
    and tried again at the next look."""
    t = FakeTime(1_000_000.0, limit=4)
    s = Scheduled(tmp_path, t)
    s.busy, s.broken = 1, 1
    periodic = s.runner.periodic(Schedule(interval=3600.0))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    assert s.tries == [1_000_060.0, 1_000_360.0, 1_000_660.0]
    assert s.started == [1_000_660.0]
    assert periodic.failures == 1


async def test_the_cron_loop_on_a_fake_clock(tmp_path: Path) -> None:
    """At most 5 minutes between looks at the clock; at the time, up to 5 s later, one
    run; then towards the next day's time."""
    t = FakeTime(T_CRON, limit=6)  # 02:50, ten minutes before the time
    s = Scheduled(tmp_path, t)
    periodic = s.runner.periodic(Schedule(cron="0 3 * * *"))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    at_three = datetime(2026, 11, 27, 3, tzinfo=UTC).timestamp()
    assert t.sleeps == [300.0, 305.0, 300.0, 300.0, 300.0, 300.0]
    assert t.draws == [(0.0, 5.0)]
    assert s.started == [at_three + 5.0]
    assert periodic.runs == 1 and periodic.failures == 0


async def test_the_cron_loop_retries_while_busy_until_the_following_time(
    tmp_path: Path,
) -> None:
    """While another run holds the lease, try every 30 s, until 30 s before the next
    time; that time gets its own tries."""
    t = FakeTime(datetime(2026, 11, 27, 2, 59, 30, tzinfo=UTC).timestamp(), limit=40)
    s = Scheduled(tmp_path, t)
    s.busy = 10**6  # never free
    periodic = s.runner.periodic(Schedule(cron="*/15 * * * *"))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    three = datetime(2026, 11, 27, 3, tzinfo=UTC).timestamp()
    first = [three + 5 + 30 * k for k in range(29)]  # the last before 03:14:30
    assert s.tries[:29] == first
    assert s.tries[29] == three + 15 * 60 + 5  # 03:15's first try
    assert t.sleeps[:30] == [35.0] + [30.0] * 29
    assert t.sleeps[30] == 30.0  # from 03:14:35 to 03:15, and up to 5 s more
    assert s.started == []


async def test_the_cron_loop_stops_trying_when_another_node_ran_it(tmp_path: Path) -> None:
    t = FakeTime(datetime(2026, 11, 27, 2, 59, 30, tzinfo=UTC).timestamp(), limit=5)
    s = Scheduled(tmp_path, t)
    s.busy = 10**6
    three = datetime(2026, 11, 27, 3, tzinfo=UTC).timestamp()

    async def sleep(seconds: float) -> None:
        await FakeTime.sleep(t, seconds)
        if len(t.sleeps) == 3:
            s.runs.last = three + 1  # another node's run for 03:00 was recorded

    s.runner.sleep = sleep
    periodic = s.runner.periodic(Schedule(cron="0 3 * * *"))
    with pytest.raises(asyncio.CancelledError):
        await periodic.run()
    assert s.tries == [three + 5, three + 35]  # the third look sees the record
    assert t.sleeps[:3] == [35.0, 30.0, 30.0]
    assert t.sleeps[3] == 300.0  # then towards the next day
    assert s.started == []
