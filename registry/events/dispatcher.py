"""Delivery: one task per endpoint in every process; a lease in the database lets one
process at a time (of all workers and nodes) send to each endpoint, in ``seq`` order.

The delivery loop is hand-written rather than a :class:`~registry.periodic.Periodic`:
each round says how long to wait (nothing after a full batch, the pause after a
failure, a poll when idle) and whether an event written by this process cuts the wait
short. The outbox pruning is a ``Periodic``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from datetime import UTC, datetime

import httpx

from registry.config import NotificationEndpointSettings
from registry.events import store as outbox
from registry.events.metrics import EventMetrics
from registry.events.sender import Sender
from registry.meta.db import Database
from registry.meta.lease import Lease
from registry.periodic import Clock, Periodic, Sleep, Uniform

log = logging.getLogger("wharf.events")

IDLE_POLL = 0.25  # the lease holder looks for events other processes wrote
STANDBY_POLL = 1.0  # the others look whether the holder's lease ran out
RETRY_BASE = 0.1  # first retry after a failure; doubles up to ``backoff``
LEASE_MARGIN = 3.0  # a lease outlives the longest send by this much
STATS_EVERY = 2.0
PRUNE_EVERY = 600.0  # seconds between prunings of the outbox


def owner_id() -> str:
    """Who holds a lease: host, process and a random part (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def retry_delay(failures: int, threshold: int, backoff: float) -> float:
    """Pause after the ``failures``-th consecutive failure: doubling from 0.1 s, at most
    ``backoff``; ``backoff`` itself once ``threshold`` failures were reached."""
    if failures >= max(threshold, 1):
        return backoff
    return min(backoff, RETRY_BASE * 2.0 ** (failures - 1))


class EndpointWorker:
    """Sends one endpoint's pending events whenever this process holds its lease."""

    def __init__(
        self,
        db: Database,
        endpoint: NotificationEndpointSettings,
        sender: Sender,
        metrics: EventMetrics,
        owner: str,
        clock: Clock = time.time,
    ) -> None:
        self.db = db
        self.endpoint = endpoint
        self.name = endpoint.name
        self.sender = sender
        self.metrics = metrics
        self.owner = owner
        self.timeout = endpoint.timeout_seconds
        self.lease_seconds = self.timeout + 2 * LEASE_MARGIN
        self.clock = clock  # epoch seconds: leases are compared across nodes
        self.lease = Lease(db, outbox.ENDPOINT_LEASES, self.lease_seconds, clock)
        self.key = {"name": self.name}
        self.holding = False
        self._wake = asyncio.Event()
        self._stats_at = 0.0

    def wake(self) -> None:
        """New events were written by this process: look now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                delay, wakeable = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: try again later
                log.warning("event delivery to %s: %s", self.name, e)
                delay, wakeable = STANDBY_POLL, False
            if delay > 0:
                await self._sleep(delay, wakeable)

    async def _sleep(self, delay: float, wakeable: bool) -> None:
        if not wakeable:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        if self._wake.is_set():
            self._wake.clear()
            await asyncio.sleep(0.005)  # let the writing transaction commit

    async def _lease(self, state: outbox.EndpointState, now: datetime) -> bool:
        """Hold the lease for at least one more send, taking or renewing it if needed."""
        until = state.lease_until
        if state.lease_owner == self.owner and until is not None:
            if (until - now).total_seconds() > self.timeout + LEASE_MARGIN:
                return True
        elif state.lease_owner is not None and until is not None and until > now:
            return False  # another process sends for this endpoint
        taken = await self.lease.take(self.key, self.owner)
        if taken and not self.holding:
            log.info("delivering events to %s from this process", self.name)
        return taken

    async def step(self) -> tuple[float, bool]:
        """One round: returns how long to wait before the next, and whether a new local
        event may cut the wait short."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        state = await self.db.run_read(outbox.endpoint_state, self.name)
        if state is None:
            await self.db.run_write(outbox.ensure_endpoints, [self.name])
            return 0, False
        if not await self._lease(state, now):
            self._lost()
            return STANDBY_POLL, False
        self.holding = True
        if state.paused_until is not None and state.paused_until > now:
            return (state.paused_until - now).total_seconds(), False
        batch = await self.db.run_read(outbox.pending_batch, self.name, self.endpoint.maxbatch)
        await self._stats()
        if not batch:
            return IDLE_POLL, True
        outcome = await self.sender.send(batch)
        seqs = [p.seq for p in batch]
        if outcome.delivered:
            await self.db.run_write(outbox.delivered, self.name, seqs[: outcome.delivered])
            self.metrics.delivered.labels(self.name).inc(outcome.delivered)
        if outcome.error is None:
            return 0, False
        rest = seqs[outcome.delivered :]
        failures = 0 if outcome.delivered else state.failures
        pause = retry_delay(failures + 1, self.endpoint.threshold, self.endpoint.backoff_seconds)
        _, parked = await self.db.run_write(
            outbox.failed,
            self.name,
            rest,
            outcome.error,
            pause,
            self.endpoint.maxattempts,
            self.endpoint.maxage,
        )
        self.metrics.failed.labels(self.name).inc(len(rest))
        if parked:
            self.metrics.dead.labels(self.name).inc(parked)
            log.warning("%d events for %s parked as dead: %s", parked, self.name, outcome.error)
        log.info("delivery to %s failed (retry in %.2fs): %s", self.name, pause, outcome.error)
        return pause, False

    def _lost(self) -> None:
        if self.holding:
            self.holding = False
            self.metrics.pending.labels(self.name).set(0)
            self.metrics.lag.labels(self.name).set(0)

    async def _stats(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._stats_at < STATS_EVERY:
            return
        self._stats_at = loop.time()
        stats = await self.db.run_read(outbox.queue_stats, self.name)
        self.metrics.pending.labels(self.name).set(stats["pending"])
        oldest = stats["oldest_pending"]
        lag = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.lag.labels(self.name).set(max(lag, 0.0))

    async def release(self) -> None:
        """Give the lease up (a clean shutdown): another process need not wait for it."""
        if self.holding:
            with contextlib.suppress(Exception):
                await self.lease.release(self.key, self.owner)
            self.holding = False


class Dispatcher:
    """The endpoint workers of this process, and the outbox pruning."""

    def __init__(
        self,
        db: Database,
        endpoints: list[NotificationEndpointSettings],
        mediatype: str,
        metrics: EventMetrics,
        retention: float,
        clock: Clock = time.time,
    ) -> None:
        self.db = db
        self.client = httpx.AsyncClient(
            follow_redirects=False, limits=httpx.Limits(max_connections=50)
        )
        owner = owner_id()
        self.workers = [
            EndpointWorker(db, e, Sender(e, mediatype, self.client), metrics, owner, clock)
            for e in endpoints
        ]
        self.retention = retention
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the workers run on (``wake`` may be called from other threads)."""
        self._loop = loop

    def wake(self) -> None:
        """Called (from any thread) when this process wrote events."""
        if self._loop is None or self._loop.is_closed():
            return
        for worker in self.workers:
            self._loop.call_soon_threadsafe(worker.wake)

    async def start(self) -> None:
        try:
            await self.db.run_write(outbox.ensure_endpoints, [w.name for w in self.workers])
        except Exception as e:  # each worker creates its row when the database is back
            log.warning("events: cannot record the endpoints yet: %s", e)
        for worker in self.workers:
            task = asyncio.create_task(worker.run_forever(), name=f"events-{worker.name}")
            self._tasks.append(task)
        self._tasks.append(self.pruning().start())

    async def prune(self) -> int:
        """Delete the events past ``retention`` that no endpoint still needs."""
        removed = await self.db.run_write(outbox.prune, self.retention)
        if removed:
            log.info("pruned %d delivered events from the outbox", removed)
        return removed

    def pruning(self, sleep: Sleep = asyncio.sleep, uniform: Uniform = random.uniform) -> Periodic:
        """Prune every ``PRUNE_EVERY`` seconds, the first time one interval after the
        start; a failure (the database away) is logged and the next one comes as due."""
        return Periodic(
            "events-prune", self.prune, log, interval=PRUNE_EVERY, sleep=sleep, uniform=uniform
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in self.workers:
            await worker.release()
        await self.client.aclose()
