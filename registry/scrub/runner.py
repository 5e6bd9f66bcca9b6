"""Scrub runs started inside a registry process: by the API and by ``scrub.schedule``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from registry.config import ScrubSettings
from registry.meta.db import Database
from registry.periodic import Periodic
from registry.schedules import Schedule, next_time, seconds_until_next
from registry.scrub import store_runs
from registry.scrub.errors import ScrubRunning
from registry.scrub.scrubber import Scrubber, ScrubBusy, ScrubMetrics
from registry.scrub.store_runs import Record
from storage.blobs import BlobStore

log = logging.getLogger("wharf.scrub")

CRON_JITTER = 5.0  # seconds after a cron time within which each node tries to start
CRON_STEP = 300.0  # the longest sleep before looking at the clock again
INTERVAL_STEP = 300.0  # with an interval schedule, look at least this often (jittered)
SCHEDULE_NAME = "scheduled scrub"


class ScrubRunner:
    """Starts runs in this process, one at a time across all of them (the lease)."""

    def __init__(
        self,
        settings: ScrubSettings,
        db: Database,
        blobs: BlobStore,
        metrics: ScrubMetrics | None = None,
        record: Record | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.metrics = metrics
        self.record = record
        self._running: dict[int, tuple[Scrubber, asyncio.Task[None]]] = {}

    async def start(self, trigger: str, rate: int | None = None, resume: bool = False) -> int:
        """Start a run in the background; its id. :class:`ScrubRunning` if one is going on."""
        scrubber = Scrubber(
            self.db,
            self.blobs,
            self.settings.rate if rate is None else rate,
            metrics=self.metrics,
            record=self.record,
        )
        try:
            run_id = await scrubber.start(trigger, resume=resume)
        except ScrubBusy as e:
            raise ScrubRunning(str(e)) from None
        task = asyncio.create_task(self._execute(scrubber), name=f"scrub-run-{run_id}")
        self._running[run_id] = (scrubber, task)
        task.add_done_callback(lambda _: self._running.pop(run_id, None))
        return run_id

    async def _execute(self, scrubber: Scrubber) -> None:
        result = await scrubber.execute()
        log.info(
            "scrub run %s %s: checked %d objects (%d bytes), %d bad",
            result.run_id,
            result.state,
            result.checked,
            result.checked_bytes,
            result.bad,
        )

    def stop(self, run_id: int) -> bool:
        """Ask a run of this process to stop (resumable); False if it runs elsewhere."""
        found = self._running.get(run_id)
        if found is None:
            return False
        found[0].stop()
        return True

    def periodic(self, plan: Schedule) -> Periodic:
        """The loop of ``scrub.schedule`` (an interval or a cron expression, UTC)."""
        if plan.cron is not None:
            expression = plan.cron

            def following(now: float) -> float:
                due, _ = seconds_until_next(expression, datetime.fromtimestamp(now, UTC))
                return due.timestamp()

            async def cron_job() -> None:
                assert periodic.due is not None
                due = datetime.fromtimestamp(periodic.due, UTC)
                last = await self.db.run_read(store_runs.last_scheduled)
                if last is not None and last >= due.timestamp():
                    return  # another node or worker started it
                if time.time() < next_time(expression, due).timestamp():
                    await self._scheduled()

            periodic = Periodic(
                SCHEDULE_NAME,
                cron_job,
                log,
                next_time=following,
                step=CRON_STEP,
                spread=CRON_JITTER,
            )
            return periodic
        assert plan.interval is not None
        interval = plan.interval

        async def job() -> None:
            last = await self.db.run_read(store_runs.last_scheduled)
            if last is None or time.time() - last >= interval * 0.9:
                await self._scheduled()

        return Periodic(
            SCHEDULE_NAME,
            job,
            log,
            interval=min(interval, INTERVAL_STEP),
            first=(1.0, min(interval, 60.0)),
            jitter=(0.5, 1.0),
        )

    async def _scheduled(self) -> None:
        with contextlib.suppress(ScrubRunning):
            await self.start("schedule", resume=self.settings.resume)

    async def close(self, wait: float = 5.0) -> None:
        """Stop the runs of this process (their cursors saved: resumable), waiting up to
        ``wait`` seconds for them to record it; then cancel them."""
        running = list(self._running.values())
        for scrubber, _task in running:
            scrubber.stop()
        tasks = [task for _scrubber, task in running]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=wait)
        for task in pending:
            task.cancel()
