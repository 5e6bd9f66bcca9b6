"""Wiring replication, and the mirror's cache eviction, into a running registry (called
from ``Wharf._start_features``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.meta.trail import NO_TRAIL, Trail
from registry.metrics import Metrics
from registry.periodic import Periodic
from replicator import mirror_evict_api
from replicator.api import PREFIX, ReplicationAPI
from replicator.hook import OnPushHook
from replicator.mirror_evict import EvictionMetrics, Evictor, PullTimes, policies
from replicator.mirror_store import MirrorStore
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


def start_mirror_eviction(
    services: Services,
    registry: CollectorRegistry,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
) -> Evictor:
    """Record when mirrored manifests are pulled (a pull listener, written every half
    second), mount ``/api/mirror``, and evict every ``mirroreviction.interval`` unless
    ``mirroreviction.enabled`` is off (issue #16). Started whether mirrors are configured
    or not: the cache of a mirror configured before is evicted too."""
    settings = services.settings
    rules = policies(settings)
    pulls = PullTimes(MirrorStore(services.meta.db), rules)
    if rules:
        services.pull_listeners.append(pulls.pulled)
        flusher = asyncio.create_task(pulls.run_forever(), name="mirror-pull-times")
        stack.push_async_callback(pulls.flush)  # last: after the task is cancelled
        stack.callback(flusher.cancel)
    metrics = EvictionMetrics(registry)
    evictor = Evictor(services.meta.db, rules, metrics, pulls)
    mount(mirror_evict_api.PREFIX, mirror_evict_api.MirrorAPI(evictor))
    config = settings.mirroreviction
    if config.enabled:
        loop = Periodic(
            "mirror eviction",
            evictor.run,
            logging.getLogger("wharf.mirror"),
            interval=config.interval,
            jitter=(0.9, 1.1),
            errors=metrics.errors,
        )
        loop.start()
        stack.push_async_callback(loop.stop)
    return evictor
