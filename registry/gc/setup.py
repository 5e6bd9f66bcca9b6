"""Starting garbage collection in a registry process: pins on every push path, the
``/api/gc`` API, the metrics and the schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.config import Settings
from registry.gc.api import GCAPI, PREFIX
from registry.gc.guard import PushGuard
from registry.gc.runner import GCMetrics, GCRunner
from registry.gc.store_doom import Removed
from registry.gc.store_mark import KeepRoots
from registry.gc.store_pins import guard_change
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, Trail
from registry.schedules import parse_schedule


def gc_pins(db: Database, settings: Settings) -> PushGuard:
    """The services' pins (asked for before they are built): always on, since a GC may
    run from the CLI at any time."""
    return PushGuard(db, settings.gc.pinrefresh)


def start_gc(
    services: Services,
    metrics: CollectorRegistry,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
    roots: Sequence[KeepRoots] = (),
    removed: Sequence[Removed] = (),
    trail: Trail = NO_TRAIL,
) -> GCRunner:
    """Always on: the change hook that pins what links and manifest pushes rely on, and
    the API; the schedule when ``gc.schedule`` is set. ``roots``: what features keep
    though no tag reaches it (``store_mark.KeepRoots``), for every run and the usage;
    ``removed``: told in the sweep's transactions what it deleted (``store_doom.Removed``)."""
    services.meta.add_hook(guard_change)
    driver = services.uploads.uploads.driver
    runner = GCRunner(
        services.settings,
        services.meta.db,
        driver,
        services.meta.hooks,
        GCMetrics(metrics),
        roots=roots,
        removed=removed,
        trail=trail,
    )
    mount(PREFIX, GCAPI(services.settings, services.meta.db, runner))
    stack.callback(runner.cancel)
    if services.settings.gc.schedule:
        schedule = runner.periodic(parse_schedule(services.settings.gc.schedule))
        schedule.start()
        stack.callback(schedule.cancel)
    return runner
