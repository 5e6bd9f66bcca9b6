"""Runs started inside a registry process (the API and the schedule), and the options the
configuration and requests give."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from registry.config import GCSettings, Settings
from registry.durations import parse_duration
from registry.errors import GCRunning, InvalidParameter
from registry.gc import store_runs
from registry.gc.collector import Collector, GCBusy, GCOptions, GCResult
from registry.gc.store_doom import Removed
from registry.gc.store_mark import KeepRoots
from registry.meta.changes import ChangeHook
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, Trail
from registry.periodic import Clock, Periodic, Sleep, Uniform
from registry.schedules import Schedule, next_time, seconds_until_next
from storage.driver import StorageDriver

log = logging.getLogger("wharf.gc")

CRON_JITTER = 5.0  # seconds after a cron time within which each node tries to start
CRON_RETRY = 30.0  # seconds between tries while another run holds the lease
CRON_STEP = 300.0  # the longest sleep before looking at the clock again
INTERVAL_STEP = 300.0  # with an interval schedule, look at least this often (jittered)
SCHEDULE_NAME = "scheduled garbage collection"  # the loop's task, and its errors' log


def options_from(settings: Settings, **overrides: Any) -> GCOptions:
    """Run options from the ``gc`` and upload purging settings, with ``overrides``."""
    gc: GCSettings = settings.gc
    purging = settings.storage.maintenance.uploadpurging
    values: dict[str, Any] = {
        "grace": gc.grace,
        "delete_untagged": gc.deleteuntagged,
        "untagged_age": gc.untaggedage,
        "upload_age": purging.age if purging.enabled else None,
        "walk": gc.walk,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GCOptions(**values)


def options_from_request(settings: Settings, body: dict[str, Any]) -> GCOptions:
    """Options of ``POST /api/gc/runs``: ``dry_run``, ``delete_untagged``, ``grace``,
    ``untagged_age``, ``walk``; durations as in the config (``1h``)."""
    known = {"dry_run", "delete_untagged", "grace", "untagged_age", "walk"}
    unknown = set(body) - known
    if unknown:
        raise InvalidParameter(f"unknown options: {', '.join(sorted(unknown))}")
    overrides: dict[str, Any] = {}
    for flag in ("dry_run", "delete_untagged", "walk"):
        if flag in body:
            if not isinstance(body[flag], bool):
                raise InvalidParameter(f"{flag} must be true or false")
            overrides[flag] = body[flag]
    for name in ("grace", "untagged_age"):
        if body.get(name) is not None:
            try:
                overrides[name] = parse_duration(body[name])
            except (ValueError, TypeError):
                raise InvalidParameter(f"{name}: invalid duration {body[name]!r}") from None
            if overrides[name] < 0:
                raise InvalidParameter(f"{name} must not be negative")
    return options_from(settings, **overrides)


class GCMetrics:
    """Counters of the runs made in this process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "wharf_gc_runs", "Garbage collection runs by outcome", ["state"], registry=registry
        )
        self.reclaimed = Counter(
            "wharf_gc_reclaimed_bytes", "Bytes garbage collection deleted", registry=registry
        )
        self.deleted = Counter(
            "wharf_gc_deleted", "Objects garbage collection deleted", ["kind"], registry=registry
        )

    def record(self, result: GCResult) -> None:
        self.runs.labels("dry_run" if result.dry_run else "done").inc()
        if result.dry_run:
            return
        self.reclaimed.inc(result.bytes_reclaimed)
        self.deleted.labels("manifest").inc(result.manifests_deleted)
        self.deleted.labels("blob").inc(result.blobs_deleted)
        self.deleted.labels("link").inc(result.links_deleted)
        self.deleted.labels("orphan").inc(result.orphan_files_deleted)


class GCRunner:
    """Starts runs in this process, one at a time, and the schedule."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        driver: StorageDriver,
        hooks: list[ChangeHook],
        metrics: GCMetrics | None = None,
        roots: Sequence[KeepRoots] = (),
        clock: Clock = time.time,
        removed: Sequence[Removed] = (),
        sleep: Sleep = asyncio.sleep,
        uniform: Uniform = random.uniform,
        trail: Trail = NO_TRAIL,
    ) -> None:
        self.settings = settings
        self.trail = trail  # the audit log: each run's start
        self.db = db
        self.driver = driver
        self.hooks = hooks  # the store's live list: hooks added later count too
        self.metrics = metrics
        self.roots = tuple(roots)  # what features keep besides the tags (store_mark)
        self.removed = tuple(removed)  # told what the sweep deletes (store_doom.Removed)
        self.clock = clock  # epoch seconds: compared with the runs' recorded times
        self.sleep = sleep
        self.uniform = uniform
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, options: GCOptions, trigger: str) -> int:
        """Start a run in the background; its id. :class:`GCRunning` if one is going on."""
        collector = Collector(
            self.db,
            self.driver,
            self.hooks,
            roots=self.roots,
            removed=self.removed,
            trail=self.trail,
        )
        try:
            run_id = await collector.start(options, trigger)
        except GCBusy as e:
            raise GCRunning(str(e)) from None
        task = asyncio.create_task(self._execute(collector, options), name=f"gc-run-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    async def _execute(self, collector: Collector, options: GCOptions) -> None:
        try:
            result = await collector.execute(options)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("garbage collection run %s failed", collector.run_id)
            if self.metrics is not None:
                self.metrics.runs.labels("failed").inc()
            return
        if self.metrics is not None:
            self.metrics.record(result)

    def periodic(self, plan: Schedule) -> Periodic:
        """The loop of ``gc.schedule`` (an interval or a cron expression)."""
        if plan.cron is not None:
            return self.cron_periodic(plan.cron)
        assert plan.interval is not None
        return self.interval_periodic(plan.interval)

    def interval_periodic(self, interval: float) -> Periodic:
        """Every ``interval`` (at most every 5 minutes, jittered), start a run unless one
        ran (on any node) lately; the first look comes 1 s to a minute after start.

        Every node runs this loop; the lease lets one run at a time, and the last
        scheduled run's start time, in the database, spaces them out across nodes.
        """

        async def job() -> None:
            try:
                last = await self.db.run_read(store_runs.last_finished)
                if last is None or self.clock() - last >= interval * 0.9:
                    await self.start(options_from(self.settings), "schedule")
            except GCRunning:
                pass

        return Periodic(
            SCHEDULE_NAME,
            job,
            log,
            interval=min(interval, INTERVAL_STEP),
            first=(1.0, min(interval, 60.0)),
            jitter=(0.5, 1.0),
            clock=self.clock,
            sleep=self.sleep,
            uniform=self.uniform,
        )

    def cron_periodic(self, expression: str) -> Periodic:
        """At each time of cron ``expression`` (UTC), start one run across all nodes and
        workers: the first to wake (up to ``CRON_JITTER`` after the time, so that nodes do
        not all race for the lease at once) takes the lease and records a scheduled run;
        the others see that record (or the lease taken) and wait for the next time."""

        def following(now: float) -> float:
            due, _ = seconds_until_next(expression, datetime.fromtimestamp(now, UTC))
            return due.timestamp()

        async def job() -> None:
            assert periodic.due is not None
            due = datetime.fromtimestamp(periodic.due, UTC)
            await self._start_scheduled(due, next_time(expression, due))

        periodic = Periodic(
            SCHEDULE_NAME,
            job,
            log,
            next_time=following,
            step=CRON_STEP,  # read the clock again now and then: it may be set, or the
            spread=CRON_JITTER,  # host suspended
            clock=self.clock,
            sleep=self.sleep,
            uniform=self.uniform,
        )
        return periodic

    async def schedule(self, interval: float) -> None:
        """:meth:`interval_periodic` until cancelled."""
        await self.interval_periodic(interval).run()

    async def schedule_cron(self, expression: str) -> None:
        """:meth:`cron_periodic` until cancelled."""
        await self.cron_periodic(expression).run()

    async def _start_scheduled(self, due: datetime, following: datetime) -> None:
        """Start the run due at ``due`` unless one was started for it already; while
        another run holds the lease, try again every half minute until ``following``."""
        while self.clock() < following.timestamp() - CRON_RETRY:
            try:
                last = await self.db.run_read(store_runs.last_finished)
                if last is not None and last >= due.timestamp():
                    return  # another node or worker ran it
                await self.start(options_from(self.settings), "schedule")
                return
            except GCRunning:
                pass
            await self.sleep(CRON_RETRY)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
