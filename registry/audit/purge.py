"""The retention of the records themselves: older than ``audit.retention`` they go."""

from __future__ import annotations

import logging
import time

from registry.audit import store
from registry.meta.db import Database
from registry.periodic import Clock

log = logging.getLogger("wharf.audit")


async def purge(db: Database, retention: float, clock: Clock = time.time) -> int:
    """Delete every record older than ``retention`` seconds, in batches (each its own
    short transaction, so pushes are not held up); the number deleted."""
    before = clock() - retention
    total = 0
    while True:
        deleted = await db.run_write(store.purge, before)
        total += deleted
        if deleted < store.PURGE_BATCH:
            break
    if total:
        log.info("audit: purged %d records older than the retention", total)
    return total
