"""Wiring of the events feature: the outbox hook, pull buffer, dispatcher and API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TypeAlias

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.config import Settings
from registry.events.api import PREFIX, EventsAPI
from registry.events.build import EventBuilder, Source
from registry.events.dispatcher import Dispatcher
from registry.events.metrics import EventMetrics
from registry.events.outbox_hook import OutboxHook, PullRecorder
from registry.request_context import RequestInfo

log = logging.getLogger("wharf.events")
# ``OutboxHook.record(conn, action, repository, target, request)`` (conn: a Connection)
Record: TypeAlias = Callable[[Any, str, str, dict[str, object], RequestInfo | None], None]


def start_events(
    services: Services,
    registry: CollectorRegistry,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
) -> OutboxHook | None:
    """Write events for every change and deliver them, if endpoints are configured; the
    API is mounted either way (it shows an empty list without endpoints). Returns the
    outbox hook (its ``record`` writes other features' events), None without endpoints."""
    settings = services.settings
    config = settings.notifications
    db = services.meta.db
    mount(PREFIX, EventsAPI(db, config))
    endpoints = config.active
    if not endpoints:
        return None
    metrics = EventMetrics(registry)
    builder = EventBuilder(settings, Source.of(settings))
    dispatcher = Dispatcher(db, endpoints, config.mediatype, metrics, config.retention)
    dispatcher.bind(asyncio.get_running_loop())
    outbox = OutboxHook(builder, endpoints, metrics, dispatcher.wake)
    services.meta.add_hook(outbox)
    pulls = PullRecorder(db, builder, endpoints, metrics, dispatcher.wake)
    services.pull_listeners.append(pulls.pulled)
    starting = asyncio.create_task(dispatcher.start(), name="events-start")
    flushing = asyncio.create_task(pulls.run_forever(), name="events-pulls")

    async def stop() -> None:
        flushing.cancel()
        starting.cancel()
        await pulls.flush()
        await dispatcher.stop()

    stack.push_async_callback(stop)
    log.info("events: delivering to %s", ", ".join(e.name for e in endpoints))
    return outbox


def outbox_writer(settings: Settings) -> Record | None:
    """For a command run beside the registry (``wharf scrub``): the writer of other
    features' events (``OutboxHook.record``) into the outbox, which the registry's senders
    deliver (the lease holder looks for events other processes wrote every
    ``IDLE_POLL``); None without endpoints."""
    endpoints = settings.notifications.active
    if not endpoints:
        return None
    builder = EventBuilder(settings, Source.of(settings))
    return OutboxHook(builder, endpoints, EventMetrics(CollectorRegistry()), _no_wake).record


def _no_wake() -> None:
    return None
