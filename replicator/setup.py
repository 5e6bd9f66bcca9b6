"""Wiring replication into a running registry (called from ``Wharf._start_features``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp

from registry.api.context import Services
from registry.meta.trail import NO_TRAIL, Trail
from registry.metrics import Metrics
from replicator.api import PREFIX, ReplicationAPI
from replicator.hook import OnPushHook
from replicator.rules import local_remote
from replicator.ruleset import RuleSet
from replicator.scheduler import ReplicationMetrics, Scheduler
from replicator.store import ReplicationStore


def start_replication(
    services: Services,
    metrics: Metrics,
    mount: Callable[[str, ASGIApp], None],
    trail: Trail = NO_TRAIL,
) -> asyncio.Task[None] | None:
    """Mount the API, register the on-push hook, start the scheduler (unless
    ``replication.enabled`` is off); the scheduler task, for the caller to cancel at
    shutdown. Rules may be added through the API at any time, so both run even without
    config rules (a tick then costs one small query)."""
    settings = services.settings
    store = ReplicationStore(services.meta.db, trail=trail)
    rules = RuleSet(settings.replication.rules, store)
    mount(PREFIX, ReplicationAPI(rules, store))
    if not settings.replication.enabled:
        return None
    services.meta.add_hook(OnPushHook(rules))
    scheduler = Scheduler(
        rules, local_remote(settings), store, ReplicationMetrics(metrics.registry)
    )
    return asyncio.create_task(scheduler.run_forever(), name="replication")
