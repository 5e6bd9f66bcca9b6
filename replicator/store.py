"""Replication state's SQL (issue #6): rules added through the API, runs, leases, pending
on-push work, resumable uploads (tables in :mod:`replicator.tables`).

Times are epoch seconds (floats): compared across nodes and dialects without time zones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from registry.meta import direct, lease
from registry.meta.db import Database
from registry.meta.lease import LeaseTable
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced
from registry.periodic import Clock
from replicator.tables import (
    replication_leases,
    replication_pending,
    replication_rules,
    replication_runs,
    replication_uploads,
)

RUN_COUNTERS = (
    "tags_copied",
    "tags_skipped",
    "tags_deleted",
    "blobs_copied",
    "blobs_skipped",
    "blobs_mounted",
    "bytes",
)


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    repository: str
    tag: str
    created_at: float


def _run_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["errors"] = json.loads(out["errors"]) if out["errors"] else []
    return out


# -- rules added through the API ----------------------------------------------


@cache
def _stored_rules_query() -> Any:
    t = replication_rules.c
    return select(t.name, t.spec).order_by(t.name)


def stored_rules(conn: Connection) -> dict[str, str]:
    """Every stored rule: name -> its JSON (also read by the on-push hook, in the push's
    own transaction, so a rule committed before a push always sees it)."""
    return {name: spec for name, spec in direct.rows(conn, _stored_rules_query(), {})}


def _stored_rule(conn: Connection, name: str) -> str | None:
    t = replication_rules.c
    spec: str | None = conn.execute(select(t.spec).where(t.name == name)).scalar_one_or_none()
    return spec


def _create_rule(conn: Connection, name: str, spec: str, who: str | None) -> bool:
    """False if a rule of that name is stored already. (On PostgreSQL a racing insert
    fails with a unique violation; the transaction is run again and then sees the row.)"""
    if _stored_rule(conn, name) is not None:
        return False
    now = time.time()
    conn.execute(
        insert(replication_rules).values(
            name=name, spec=spec, created_at=now, updated_at=now, updated_by=who
        )
    )
    return True


def _replace_rule(conn: Connection, name: str, spec: str, who: str | None) -> bool:
    """False if no rule of that name is stored."""
    result = conn.execute(
        update(replication_rules)
        .where(replication_rules.c.name == name)
        .values(spec=spec, updated_at=time.time(), updated_by=who)
    )
    return result.rowcount > 0


def _delete_rule(conn: Connection, name: str) -> bool:
    """Drop the rule with its pending work and saved uploads (its run history stays)."""
    result = conn.execute(delete(replication_rules).where(replication_rules.c.name == name))
    if result.rowcount == 0:
        return False
    conn.execute(delete(replication_pending).where(replication_pending.c.rule == name))
    conn.execute(delete(replication_uploads).where(replication_uploads.c.rule == name))
    return True


# -- runs ----------------------------------------------------------------------


def _start_run(conn: Connection, rule: str, trigger: str, node: str) -> int:
    row: dict[str, Any] = {"rule": rule, "trigger": trigger, "node": node}
    row |= {"status": "running", "started_at": time.time(), **dict.fromkeys(RUN_COUNTERS, 0)}
    run_id: int = conn.execute(
        insert(replication_runs).values(row).returning(replication_runs.c.id)
    ).scalar_one()
    return run_id


def _finish_run(
    conn: Connection, run_id: int, status: str, counters: dict[str, int], errors: list[str]
) -> None:
    values: dict[str, Any] = {k: counters.get(k, 0) for k in RUN_COUNTERS}
    values |= {"status": status, "finished_at": time.time()}
    values["errors"] = json.dumps(errors[:50]) if errors else None
    conn.execute(update(replication_runs).where(replication_runs.c.id == run_id).values(values))


def _runs(conn: Connection, rule: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(replication_runs).order_by(replication_runs.c.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(replication_runs.c.rule == rule)
    return [_run_dict(r) for r in conn.execute(query)]


def _latest(conn: Connection, status: str | None) -> dict[str, dict[str, Any]]:
    """The newest run of each rule (with ``status`` only, if given)."""
    newest = select(func.max(replication_runs.c.id)).group_by(replication_runs.c.rule)
    if status is not None:
        newest = newest.where(replication_runs.c.status == status)
    query = select(replication_runs).where(replication_runs.c.id.in_(newest))
    return {r.rule: _run_dict(r) for r in conn.execute(query)}


# -- leases --------------------------------------------------------------------


# A rule runs on one worker of one node at a time: the holder of its lease
# (:mod:`registry.meta.lease`); giving it up deletes the row.
RULE_LEASES = LeaseTable(replication_leases, ("rule",))


# -- pending on-push work ------------------------------------------------------


def add_pending(conn: Connection, rule: str, repository: str, tag: str) -> None:
    """Note a tag to replicate (called by the change hook inside the push's transaction)."""
    conn.execute(
        insert(replication_pending).values(
            rule=rule, repository=repository, tag=tag, created_at=time.time()
        )
    )


def _pending(conn: Connection, rule: str, limit: int) -> list[Pending]:
    query = (
        select(replication_pending)
        .where(replication_pending.c.rule == rule)
        .order_by(replication_pending.c.id)
        .limit(limit)
    )
    return [Pending(r.id, r.repository, r.tag, r.created_at) for r in conn.execute(query)]


def _oldest_pending(conn: Connection) -> dict[str, float]:
    query = select(replication_pending.c.rule, func.min(replication_pending.c.created_at)).group_by(
        replication_pending.c.rule
    )
    return {r[0]: float(r[1]) for r in conn.execute(query)}


def _done_pending(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(delete(replication_pending).where(replication_pending.c.id.in_(ids)))


# -- resumable uploads -----------------------------------------------------------


def _upload(conn: Connection, rule: str, repository: str, digest: str) -> tuple[str, int] | None:
    t = replication_uploads.c
    row = conn.execute(
        select(t.location, t.offset).where(
            t.rule == rule, t.repository == repository, t.digest == digest
        )
    ).first()
    return (row.location, int(row.offset)) if row is not None else None


def _save_upload(
    conn: Connection, rule: str, repository: str, digest: str, location: str, offset: int
) -> None:
    _drop_upload(conn, rule, repository, digest)
    conn.execute(
        insert(replication_uploads).values(
            rule=rule,
            repository=repository,
            digest=digest,
            location=location,
            offset=offset,
            updated_at=time.time(),
        )
    )


def _drop_upload(conn: Connection, rule: str, repository: str, digest: str) -> None:
    t = replication_uploads.c
    conn.execute(
        delete(replication_uploads).where(
            t.rule == rule, t.repository == repository, t.digest == digest
        )
    )


def _without_password(spec: str) -> object:
    """A rule's stored spec (JSON) for the audit log: the remote's password left out."""
    try:
        data = json.loads(spec)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("remote"), dict):
        data["remote"].pop("password", None)
    return data


class ReplicationStore:
    """Each method one transaction on the registry's database. ``clock``: the time of
    the leases (epoch seconds, compared across nodes)."""

    def __init__(self, db: Database, clock: Clock = time.time, trail: Trail = NO_TRAIL) -> None:
        self.db = db
        self.clock = clock
        self.trail = trail  # the audit log: rule changes recorded in their transaction

    async def rules(self) -> dict[str, str]:
        return await self.db.run_read(stored_rules)

    async def rule(self, name: str) -> str | None:
        return await self.db.run_read(_stored_rule, name)

    def _traced(self, fn: Any, action: str, name: str, spec: str | None) -> Any:
        details: dict[str, object] = {"rule": name}
        if spec is not None:
            details["spec"] = _without_password(spec)
        change = AdminChange(action, f"replication:{name}", details=details)
        return traced(fn, self.trail, lambda done: change if done else None)

    async def create_rule(self, name: str, spec: str, who: str | None = None) -> bool:
        write = self._traced(_create_rule, "replication.rule.create", name, spec)
        return bool(await self.db.run_write(write, name, spec, who))

    async def replace_rule(self, name: str, spec: str, who: str | None = None) -> bool:
        write = self._traced(_replace_rule, "replication.rule.update", name, spec)
        return bool(await self.db.run_write(write, name, spec, who))

    async def delete_rule(self, name: str) -> bool:
        write = self._traced(_delete_rule, "replication.rule.delete", name, None)
        return bool(await self.db.run_write(write, name))

    async def start_run(self, rule: str, trigger: str, node: str) -> int:
        return await self.db.run_write(_start_run, rule, trigger, node)

    async def finish_run(
        self, run_id: int, status: str, counters: dict[str, int], errors: list[str]
    ) -> None:
        await self.db.run_write(_finish_run, run_id, status, counters, errors)

    async def runs(self, rule: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return await self.db.run_read(_runs, rule, limit)

    async def latest(self, status: str | None = None) -> dict[str, dict[str, Any]]:
        return await self.db.run_read(_latest, status)

    async def acquire(self, rule: str, holder: str, ttl: float) -> bool:
        """Take (or extend) ``rule``'s lease for ``ttl`` seconds unless another holds it
        unexpired; whether ``holder`` holds it now."""
        now = self.clock()

        def _take(conn: Connection) -> bool:
            return lease.take(conn, RULE_LEASES, {"rule": rule}, holder, now, ttl)

        return await self.db.run_write(_take)

    async def release(self, rule: str, holder: str) -> None:
        await self.db.run_write(lease.release, RULE_LEASES, {"rule": rule}, holder)

    async def pending(self, rule: str, limit: int = 500) -> list[Pending]:
        return await self.db.run_read(_pending, rule, limit)

    async def oldest_pending(self) -> dict[str, float]:
        return await self.db.run_read(_oldest_pending)

    async def add_pending(self, rule: str, repository: str, tag: str) -> None:
        await self.db.run_write(add_pending, rule, repository, tag)

    async def done_pending(self, ids: list[int]) -> None:
        await self.db.run_write(_done_pending, ids)

    async def upload(self, rule: str, repository: str, digest: str) -> tuple[str, int] | None:
        return await self.db.run_read(_upload, rule, repository, digest)

    async def save_upload(
        self, rule: str, repository: str, digest: str, location: str, offset: int
    ) -> None:
        await self.db.run_write(_save_upload, rule, repository, digest, location, offset)

    async def drop_upload(self, rule: str, repository: str, digest: str) -> None:
        await self.db.run_write(_drop_upload, rule, repository, digest)
