"""Retention runs: the plan (read in bulk, decided in memory per repository), its
execution through the manifest service (the path of an API ``DELETE``, so every change
hook runs: events, search, quotas, GC's guard, the audit log), the runs' records, one run
per project at a time across workers and nodes (a lease), the cron schedules, and the
rules' administration (each change handed to the trail in its own transaction)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from registry.errors import ManifestUnknown, RegistryError, Unsupported
from registry.meta import lease
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail
from registry.periodic import Periodic
from registry.retention import store
from registry.retention.decide import Decision, RepositoryRows, decide, selecting
from registry.retention.errors import (
    ProjectUnknown,
    RetentionRuleUnknown,
    RetentionRunning,
    RetentionRunUnknown,
)
from registry.retention.keepers import TagKeeper
from registry.retention.rules import Rule
from registry.retention.tables import retention_leases
from registry.schedules import next_time
from registry.service.manifests import ManifestService

log = logging.getLogger("wharf.retention")

LEASE = lease.LeaseTable(retention_leases, key=("project",))
LEASE_TTL = 120.0  # seconds; renewed every third of it while a run goes on
PROGRESS_EVERY = 1.0  # seconds between progress writes while deleting
SCHEDULE_CHECK = 30.0  # seconds between looks at the projects' cron schedules
MAX_ERRORS = 100  # errors kept in a run's summary
StartGC = Callable[[], Awaitable[int]]  # starts a GC run, its id (GCRunning if one goes on)


@dataclass(slots=True)
class Plan:
    """What a run removes (or, dry, would remove)."""

    decisions: list[Decision] = field(default_factory=list)
    bytes: int = 0
    repositories: int = 0  # repositories looked at
    tags: int = 0  # tags looked at
    seconds: float = 0.0  # how long reading and deciding took

    @property
    def removals(self) -> int:
        return sum(len(d.untag) + len(d.manifests) for d in self.decisions)

    def candidates(self) -> list[dict[str, Any]]:
        return [
            {
                "repository": d.repository,
                "tags": list(d.removed_tags),
                "manifests": [m.digest for m in d.manifests],
            }
            for d in self.decisions
        ]


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Retention:
    """The retention feature's use cases, shared by the API, the schedule and the CLI."""

    def __init__(
        self,
        db: Database,
        manifests: ManifestService,
        default_project: str,
        keepers: Sequence[TagKeeper] = (),
        trail: Trail = NO_TRAIL,
        start_gc: StartGC | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.manifests = manifests
        self.default = default_project
        self.keepers = tuple(keepers)
        self.trail = trail
        self.start_gc = start_gc
        self.clock = clock
        self.holder = _holder()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- rules ---------------------------------------------------------------

    def _project(self, conn: Connection, project: str) -> int:
        found = store.project_id(conn, project)
        if found is None:
            raise ProjectUnknown(
                f"project {project} does not exist", detail={"name": project[:100]}
            )
        return found

    async def settings(self, project: str) -> tuple[list[Rule], store.Policy]:
        def read(conn: Connection) -> tuple[list[Rule], store.Policy]:
            pid = self._project(conn, project)
            return store.list_rules(conn, pid), store.get_policy(conn, pid)

        return await self.db.run_read(read)

    async def replace(
        self, project: str, rules: Sequence[Rule], policy: store.Policy, actor: str | None = None
    ) -> tuple[list[Rule], store.Policy]:
        def write(conn: Connection) -> tuple[list[Rule], store.Policy]:
            pid = self._project(conn, project)
            stored = store.replace_rules(conn, pid, rules)
            store.set_policy(conn, pid, policy)
            self.trail(
                conn,
                AdminChange(
                    "retention.rules.replace",
                    project,
                    project=project,
                    details={
                        "rules": [r.as_json() for r in stored],
                        "schedule": policy.schedule,
                        "gc": policy.gc,
                    },
                    actor=actor,
                ),
            )
            return stored, policy

        return await self.db.run_write(write)

    async def add(self, project: str, rule: Rule) -> Rule:
        def write(conn: Connection) -> Rule:
            stored = store.add_rule(conn, self._project(conn, project), rule)
            self.trail(
                conn,
                AdminChange(
                    "retention.rule.create",
                    f"{project}/rule/{stored.id}",
                    project=project,
                    details=stored.as_json(),
                ),
            )
            return stored

        return await self.db.run_write(write)

    async def remove(self, project: str, rule_id: int) -> Rule:
        def write(conn: Connection) -> Rule:
            gone = store.delete_rule(conn, self._project(conn, project), rule_id)
            if gone is None:
                raise RetentionRuleUnknown(detail={"project": project[:100], "id": rule_id})
            self.trail(
                conn,
                AdminChange(
                    "retention.rule.delete",
                    f"{project}/rule/{rule_id}",
                    project=project,
                    details=gone.as_json(),
                ),
            )
            return gone

        return await self.db.run_write(write)

    # -- planning ------------------------------------------------------------

    def _read(
        self, conn: Connection, project: str
    ) -> tuple[list[Rule], list[RepositoryRows], dict[str, set[str]]]:
        rules = store.list_rules(conn, self._project(conn, project))
        if not rules:
            return rules, [], {}
        repos = [
            r
            for r in store.read_project(conn, project, self.default)
            if selecting(rules, r.relative)
        ]
        protected: dict[str, set[str]] = {}
        for keeper in self.keepers:
            for repo in repos:
                names = [t.name for t in repo.tags]
                if names:
                    found = keeper(conn, project, repo.name, names)
                    if found:
                        protected.setdefault(repo.name, set()).update(found)
        return rules, repos, protected

    async def plan(self, project: str) -> Plan:
        """What a run of ``project`` would remove now, and the bytes that frees."""
        started = time.monotonic()
        rules, repos, protected = await self.db.run_read(self._read, project)
        log.debug("retention of %s: read in %.2f s", project, time.monotonic() - started)
        now = self.clock()

        def deciding() -> list[Decision]:
            found = []
            for repo in repos:
                decision = decide(
                    repo, selecting(rules, repo.relative), now, protected.get(repo.name, set())
                )
                if not decision.empty:
                    found.append(decision)
            return found

        decisions = await asyncio.to_thread(deciding)
        log.debug("retention of %s: decided at %.2f s", project, time.monotonic() - started)
        going = [m.id for d in decisions for m in d.manifests]
        freed = await self.db.run_read(store.freed_bytes, going)
        return Plan(
            decisions,
            freed,
            repositories=len(repos),
            tags=sum(len(r.tags) for r in repos),
            seconds=time.monotonic() - started,
        )

    # -- runs ----------------------------------------------------------------

    async def start(
        self,
        project: str,
        dry_run: bool,
        gc: bool,
        trigger: str,
        actor: str | None = None,
        background: bool = True,
    ) -> int:
        """Start a run (in the background, or awaited with ``background=False``); its id.
        :class:`RetentionRunning` while another run of the project goes on anywhere."""
        if not dry_run and not self.manifests.delete_enabled:
            raise Unsupported(
                "deletes are disabled on this registry (storage.delete.enabled): "
                "only dry runs are possible"
            )
        now = self.clock()

        def begin(conn: Connection) -> int:
            self._project(conn, project)
            if not lease.take(conn, LEASE, {"project": project}, self.holder, now, LEASE_TTL):
                raise RetentionRunning(
                    f"a retention run of project {project} is going on",
                    detail={"project": project[:100]},
                )
            run_id = store.insert_run(conn, project, trigger, dry_run, gc)
            lease.renew(
                conn, LEASE, {"project": project}, self.holder, now, LEASE_TTL, {"run_id": run_id}
            )
            self.trail(
                conn,
                AdminChange(
                    "retention.run.start",
                    f"{project}/run/{run_id}",
                    project=project,
                    details={"run": run_id, "dry_run": dry_run, "gc": gc, "trigger": trigger},
                    actor=actor,
                ),
            )
            return run_id

        run_id = await self.db.run_write(begin)
        job = self._execute(run_id, project, dry_run, gc)
        if not background:
            await job
            return run_id
        task = asyncio.create_task(job, name=f"retention-run-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    async def _keep_lease(self, project: str) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            with contextlib.suppress(Exception):
                await self.db.run_write(
                    lease.renew, LEASE, {"project": project}, self.holder, self.clock(), LEASE_TTL
                )

    async def _execute(self, run_id: int, project: str, dry_run: bool, gc: bool) -> None:
        keeping = asyncio.create_task(self._keep_lease(project), name=f"retention-lease-{run_id}")
        summary: dict[str, Any] = {}
        candidates: list[dict[str, Any]] | None = None
        status = "failed"
        try:
            plan = await self.plan(project)
            candidates = plan.candidates()
            await self.db.run_write(store.set_progress, run_id, plan.removals, 0)
            summary = {
                "repositories": len(plan.decisions),
                "tags_removed": sum(len(d.removed_tags) for d in plan.decisions),
                "manifests_removed": sum(len(d.manifests) for d in plan.decisions),
                "bytes_predicted": plan.bytes,
                "decided_seconds": round(plan.seconds, 3),
                "skipped": 0,
                "errors": [],
            }
            if not dry_run:
                await self._remove(run_id, plan, summary)
                if gc and self.start_gc is not None:
                    try:
                        summary["gc_run"] = await self.start_gc()
                    except RegistryError as e:
                        summary["errors"].append({"gc": e.message})
            status = "done"
        except asyncio.CancelledError:
            summary.setdefault("errors", []).append({"run": "cancelled (the process stopped)"})
            raise
        except Exception as e:
            log.exception("retention run %d of %s failed", run_id, project)
            summary.setdefault("errors", []).append({"run": str(e)[:500]})
        finally:
            keeping.cancel()

            def finish(conn: Connection) -> None:
                store.finish_run(conn, run_id, status, summary, candidates)
                lease.release(conn, LEASE, {"project": project}, self.holder)
                self.trail(
                    conn,
                    AdminChange(
                        "retention.run.finish",
                        f"{project}/run/{run_id}",
                        project=project,
                        details={"run": run_id, "status": status, **summary},
                        outcome="success" if status == "done" else "failure",
                    ),
                )

            with contextlib.suppress(Exception):
                await asyncio.shield(self.db.run_write(finish))

    async def _remove(self, run_id: int, plan: Plan, summary: dict[str, Any]) -> None:
        """Remove what ``plan`` says, through the manifest service (the API's path)."""
        done, last = 0, time.monotonic()
        errors: list[dict[str, Any]] = summary["errors"]
        for decision in plan.decisions:
            steps = [*decision.untag, *(m.digest for m in decision.manifests)]
            for reference in steps:
                try:
                    await self.manifests.delete(decision.repository, reference)
                except ManifestUnknown:
                    summary["skipped"] += 1  # gone meanwhile (a concurrent delete)
                except RegistryError as e:
                    if len(errors) < MAX_ERRORS:
                        errors.append(
                            {
                                "repository": decision.repository,
                                "reference": reference,
                                "code": e.code,
                                "message": e.message,
                            }
                        )
                done += 1
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    await self.db.run_write(store.set_progress, run_id, plan.removals, done)
        await self.db.run_write(store.set_progress, run_id, plan.removals, done)

    async def runs(self, project: str, limit: int = 20) -> list[dict[str, Any]]:
        def read(conn: Connection) -> list[dict[str, Any]]:
            self._project(conn, project)
            return store.list_runs(conn, project, limit)

        return await self.db.run_read(read)

    async def run(self, project: str, run_id: int) -> dict[str, Any]:
        found = await self.db.run_read(store.get_run, project, run_id)
        if found is None:
            raise RetentionRunUnknown(detail={"project": project[:100], "id": run_id})
        return found

    async def pulls(self, repository: str) -> store.PullTimes | None:
        return await self.db.run_read(store.pull_times, repository)

    # -- the schedule --------------------------------------------------------

    async def start_due(self) -> list[int]:
        """Start the scheduled runs that are due (each cron time once, on one node)."""
        started: list[int] = []
        now = self.clock()
        for item in await self.db.run_read(store.scheduled):
            base = item.last_due
            if base is None:  # a new schedule: its first time after now counts from now
                await self.db.run_write(store.claim_due, item.project_id, now, None)
                continue
            due = next_time(item.schedule, datetime.fromtimestamp(base, UTC)).timestamp()
            if due > now:
                continue
            # the latest cron time up to now: a registry down for days runs once
            while (
                following := next_time(item.schedule, datetime.fromtimestamp(due, UTC))
            ).timestamp() <= now:
                due = following.timestamp()
            if not await self.db.run_write(store.claim_due, item.project_id, due, base):
                continue  # another worker or node started it
            try:
                started.append(await self.start(item.project, False, item.gc, "schedule"))
            except (RetentionRunning, Unsupported) as e:
                log.warning("scheduled retention of %s not started: %s", item.project, e)
        return started

    def periodic(self) -> Periodic:
        return Periodic(
            "retention-schedule",
            self._check,
            log,
            interval=SCHEDULE_CHECK,
            first=(1.0, 3.0),
            jitter=(0.8, 1.0),
        )

    async def _check(self) -> None:
        await self.start_due()

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
