"""Starting retention: the pull times (always recorded, batched), the API, the cron
schedules of the projects' runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

from registry.api.context import Services
from registry.meta.trail import NO_TRAIL, Trail
from registry.retention.api import (
    PREFIX,
    PULLS,
    Access,
    PullsAPI,
    RetentionAPI,
    admins_only,
    handles,
)
from registry.retention.keepers import TagKeeper
from registry.retention.pulls import PullTracker
from registry.retention.runner import Retention, StartGC

__all__ = ["Retention", "TagKeeper", "build_retention", "start_retention"]


def build_retention(
    services: Services,
    keepers: Sequence[TagKeeper] = (),
    trail: Trail = NO_TRAIL,
    start_gc: StartGC | None = None,
) -> Retention:
    """The use cases alone (the CLI's): no listener, API or schedule."""
    return Retention(
        services.meta.db,
        services.manifests,
        services.settings.projects.default,
        keepers=keepers,
        trail=trail,
        start_gc=start_gc,
    )


def start_retention(
    services: Services,
    stack: AsyncExitStack,
    mount: Callable[..., None],
    *,
    keepers: Sequence[TagKeeper] = (),
    trail: Trail = NO_TRAIL,
    start_gc: StartGC | None = None,
    access: Access = admins_only,
) -> Retention:
    """Record last-pull times of every manifest GET (``services.pull_listeners``), serve
    ``/api/projects/NAME/retention...`` (mounted for these paths only, before the projects
    API) and ``/api/retention/pulls``, and start the projects' scheduled runs.
    ``keepers``: tags that must stay whatever the rules say (immutable tags);
    ``start_gc``: starts a GC run, for runs asked to (``gc: true``)."""
    retention = build_retention(services, keepers, trail, start_gc)
    tracker = PullTracker(services.meta.db)
    services.pull_listeners.append(tracker.pulled)
    flushing = asyncio.create_task(tracker.run_forever(), name="retention-pulls")
    schedule = retention.periodic()
    schedule.start()

    async def stop() -> None:
        schedule.cancel()
        flushing.cancel()
        retention.cancel()
        await tracker.flush()

    stack.push_async_callback(stop)
    mount(PREFIX, RetentionAPI(retention, access), handles)
    mount(PULLS, PullsAPI(retention))
    return retention
