"""Starting the scrub in a registry process: the ``/api/scrub`` API, its metrics and the
schedule (``scrub.schedule``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.schedules import parse_schedule
from registry.scrub.api import PREFIX, ScrubAPI
from registry.scrub.runner import ScrubRunner
from registry.scrub.scrubber import ScrubMetrics
from registry.scrub.store_runs import Record


def start_scrub(
    services: Services,
    metrics: CollectorRegistry,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
    record: Record | None = None,
) -> ScrubRunner:
    """Always on: the API (runs on demand); the schedule when ``scrub.schedule`` is set.
    ``record``: the events feature's writer (``scrub_bad`` events; None without
    endpoints)."""
    settings = services.settings.scrub
    db = services.meta.db
    runner = ScrubRunner(settings, db, services.blobs.blobs, ScrubMetrics(metrics), record)
    mount(PREFIX, ScrubAPI(db, runner))
    stack.push_async_callback(runner.close)
    if settings.schedule:
        schedule = runner.periodic(parse_schedule(settings.schedule))
        schedule.start()
        stack.callback(schedule.cancel)
    return runner
