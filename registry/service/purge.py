"""The upload purger: deletes upload sessions abandoned for longer than a set age."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from registry.periodic import Periodic, Sleep, Uniform
from storage.uploads import UploadStore

log = logging.getLogger("wharf.purge")


FIRST_PURGE_JITTER = 3600.0  # seconds


class UploadPurger:
    """Runs :meth:`UploadStore.purge` now and then, as the reference's ``uploadpurging``.

    A purged session's slot under ``storage.maintenance.uploadlimits`` is free from the
    moment it is older than ``age`` (registry/meta/uploads.py): it counts no more."""

    def __init__(
        self,
        uploads: UploadStore,
        age: float,
        interval: float,
        dry_run: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.uploads = uploads
        self.age = age
        self.interval = interval
        self.dry_run = dry_run
        self.clock = clock  # epoch seconds, as the uploads' start times

    async def run_once(self) -> list[str]:
        """Purge once; returns the ids of the uploads purged (or that would be)."""
        purged = await self.uploads.purge(self.clock() - self.age, self.dry_run)
        if purged:
            log.info(
                "%s %d abandoned uploads older than %ds",
                "would purge" if self.dry_run else "purged",
                len(purged),
                self.age,
            )
        return purged

    def periodic(self, sleep: Sleep = asyncio.sleep, uniform: Uniform = random.uniform) -> Periodic:
        """Purge every ``interval`` seconds (times 0.9 to 1.1); errors are logged, not raised.

        The first purge comes after a random delay of up to an hour (or ``interval`` if
        shorter), as in the reference registry: nodes restarted together do not all purge
        at once, and a restart does not purge the moment it comes up."""
        return Periodic(
            "upload purge",
            self.run_once,
            log,
            interval=self.interval,
            first=(0.0, min(self.interval, FIRST_PURGE_JITTER)),
            jitter=(0.9, 1.1),
            sleep=sleep,
            uniform=uniform,
        )

    async def run_forever(self) -> None:
        """Purge on :meth:`periodic`'s schedule until cancelled."""
        await self.periodic().run()
