"""The background task in ``wharf serve``: cron schedules and on-push work.

Every second it reads the rules in force (config and database: a rule added, changed or
deleted through the API on any worker or node counts from the next tick) and looks for
due schedules and pending rows (written by the on-push hook or the API). A rule runs on
one worker of one node at a time: the runner holds the rule's lease row, renewed while it
runs. A schedule's fire time counts as done once a run with trigger ``schedule`` started
after it, so other workers that wake up for the same time skip it.

The tick and the renewal of a running rule's lease are :class:`~registry.periodic.Periodic`
loops; the scheduler's clock (epoch seconds) is that of the store's leases by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from croniter import croniter
from prometheus_client import CollectorRegistry, Counter, Gauge

from registry.config import RemoteSettings, ReplicationRuleSettings
from registry.periodic import Clock, Periodic, Sleep
from replicator.copy import Counters
from replicator.ruleset import RuleSet
from replicator.runner import FULL, RuleRunner, node_id
from replicator.store import Pending, ReplicationStore

log = logging.getLogger("wharf.replicator")
TICK = 1.0
LEASE = 60.0
RETRY_AFTER_FAILURE = 10.0
LAG_EVERY = 5.0  # seconds between updates of the lag gauges


class ReplicationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "wharf_replication_lag_seconds",
            "Age of the oldest change of a rule not yet replicated (0: in step)",
            ["rule"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.bytes = Counter(
            "wharf_replication_bytes",
            "Blob bytes sent by replication",
            ["rule"],
            registry=registry,
        )
        self.runs = Counter(
            "wharf_replication_runs", "Replication runs", ["rule", "status"], registry=registry
        )


def lag_seconds(
    rule: ReplicationRuleSettings,
    success: dict[str, object] | None,
    oldest_pending: float | None,
    now: float,
) -> float:
    """How far behind the target may be: the oldest unhandled on-push change, else (for a
    scheduled rule) the time since the start of its last successful run."""
    if oldest_pending is not None:
        return max(now - oldest_pending, 0.0)
    if rule.schedule:
        started = success.get("started_at") if success else None
        return max(now - float(started), 0.0) if isinstance(started, int | float) else -1.0
    return 0.0


class Scheduler:
    """Runs the rules of one registry process when due."""

    def __init__(
        self,
        rules: RuleSet,
        local: RemoteSettings,
        store: ReplicationStore,
        metrics: ReplicationMetrics | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.ruleset = rules
        self.rules: dict[str, ReplicationRuleSettings] = {}
        self.local = local
        self.store = store
        self.metrics = metrics
        self.clock = clock or store.clock  # the leases' clock unless another is given
        self.sleep = sleep
        self.holder = f"{node_id()}:{uuid.uuid4().hex[:8]}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._next: dict[str, float] = {}
        self._schedules: dict[str, str] = {}  # the schedule each _next was computed for
        self._quiet_until: dict[str, float] = {}
        self._lag_updated = 0.0
        self._lag_labels: set[str] = set()

    def ticking(self) -> Periodic:
        """A tick now, then one ``TICK`` after each ended; a failed one is logged."""
        return Periodic(
            "replication scheduler tick",
            self.tick,
            log,
            interval=TICK,
            first=(0.0, 0.0),
            clock=self.clock,
            sleep=self.sleep,
        )

    async def run_forever(self) -> None:
        try:
            await self.ticking().run()
        finally:
            for task in self._running.values():
                task.cancel()

    def _reschedule(self, rules: dict[str, ReplicationRuleSettings], now: float) -> None:
        """Take the rules in force: new or changed schedules get their next fire time,
        rules gone (or no longer scheduled) lose theirs."""
        self.rules = rules
        for name in list(self._next):
            if name not in rules or rules[name].schedule != self._schedules.get(name):
                del self._next[name]
                self._schedules.pop(name, None)
        for name, rule in rules.items():
            if rule.schedule and name not in self._next:
                self._next[name] = croniter(rule.schedule, now).get_next(float)
                self._schedules[name] = rule.schedule

    async def tick(self) -> None:
        now = self.clock()
        self._reschedule(await self.ruleset.current(), now)
        oldest = await self.store.oldest_pending() if self.rules else {}
        for name, rule in self.rules.items():
            if name in self._running or self._quiet_until.get(name, 0) > now:
                continue
            fire = self._next.get(name)
            if fire is not None and fire <= now:
                self._next[name] = croniter(rule.schedule, now).get_next(float)
                self._start(rule, "schedule", fire)
            elif name in oldest:
                self._start(rule, "onpush", None)
        if self.metrics is not None and now - self._lag_updated >= LAG_EVERY:
            self._lag_updated = now
            await self._update_lag(now, oldest)

    async def _update_lag(self, now: float, oldest: dict[str, float]) -> None:
        assert self.metrics is not None
        success = await self.store.latest("ok")
        for name, rule in self.rules.items():
            lag = lag_seconds(rule, success.get(name), oldest.get(name), now)
            self.metrics.lag.labels(name).set(lag)
        for name in self._lag_labels - set(self.rules):
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(name)
        self._lag_labels = set(self.rules)

    def _start(self, rule: ReplicationRuleSettings, trigger: str, fire: float | None) -> None:
        task = asyncio.create_task(self._run(rule, trigger, fire), name=f"replicate-{rule.name}")
        self._running[rule.name] = task
        task.add_done_callback(lambda _t: self._running.pop(rule.name, None))

    async def _run(self, rule: ReplicationRuleSettings, trigger: str, fire: float | None) -> None:
        if not await self.store.acquire(rule.name, self.holder, LEASE):
            return
        renewal = self.renewal(rule.name).start()
        try:
            pending: list[Pending] = []
            only: list[tuple[str, str]] | None = None
            if trigger == "schedule":
                last = (await self.store.latest(None)).get(rule.name)
                if last and last["trigger"] == "schedule" and fire and last["started_at"] >= fire:
                    return  # another worker ran this one
            else:
                pending = await self.store.pending(rule.name)
                if not pending:
                    return
                only = [(p.repository, p.tag) for p in pending]
                if any(p.repository == FULL for p in pending):
                    trigger, only = "manual", None
            status, counters = await RuleRunner(rule, self.local, self.store).run(trigger, only)
            self._count(rule.name, status, counters)
            if status == "ok":
                await self.store.done_pending([p.id for p in pending])
            else:
                self._quiet_until[rule.name] = self.clock() + RETRY_AFTER_FAILURE
        except Exception:
            log.exception("replication rule %s failed", rule.name)
            self._quiet_until[rule.name] = self.clock() + RETRY_AFTER_FAILURE
        finally:
            renewal.cancel()
            with contextlib.suppress(Exception):
                await self.store.release(rule.name, self.holder)

    def _count(self, name: str, status: str, counters: Counters) -> None:
        if self.metrics is not None:
            self.metrics.bytes.labels(name).inc(counters.bytes)
            self.metrics.runs.labels(name, status).inc()

    def renewal(self, name: str) -> Periodic:
        """Extend the lease of rule ``name`` every ``LEASE / 4`` while it runs (by taking
        it again: a row gone meanwhile is made again); a failure is logged, the next
        renewal comes as due, and a lease not renewed expires."""

        async def renew() -> None:
            await self.store.acquire(name, self.holder, LEASE)

        return Periodic(
            f"replicate-{name} lease renewal",
            renew,
            log,
            interval=LEASE / 4,
            clock=self.clock,
            sleep=self.sleep,
        )
