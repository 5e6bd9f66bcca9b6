"""Starting garbage collection in a registry process: pins on every push path, the
``/api/gc`` API, the metrics and the schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.durations import parse_duration
from registry.gc.api import GCAPI, PREFIX
from registry.gc.guard import PushGuard
from registry.gc.runner import GCMetrics, GCRunner
from registry.gc.schedule import parse_schedule
from registry.meta.gc import guard_change


def start_gc(
    services: Services,
    metrics: CollectorRegistry,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
) -> GCRunner:
    """Always on: the pins (a GC may run from the CLI at any time) and the API; the
    schedule when ``gc.schedule`` is set."""
    guard = PushGuard(services.meta.db, parse_duration(services.settings.gc.pinrefresh))
    for service in (services.blobs, services.uploads, services.manifests):
        service.guard = guard
        inner = getattr(service, "_inner", None)  # wrapped (pull-through mirror): both
        if inner is not None:
            inner.guard = guard
    services.meta.add_hook(guard_change)
    driver = services.uploads.uploads.driver
    runner = GCRunner(
        services.settings, services.meta.db, driver, services.meta.hooks, GCMetrics(metrics)
    )
    mount(PREFIX, GCAPI(services.settings, services.meta.db, runner))
    stack.callback(runner.cancel)
    if services.settings.gc.schedule:
        plan = parse_schedule(services.settings.gc.schedule)
        loop = runner.schedule_cron(plan.cron) if plan.cron else runner.schedule(plan.interval or 0)
        task = asyncio.create_task(loop, name="gc-schedule")
        stack.callback(task.cancel)
    return runner
