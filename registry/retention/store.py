"""SQL of the retention feature: rules, policies, runs, pull times, and the bulk reads the
decision is made from. Every function takes the caller's ``Connection``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    MetaData,
    Table,
    case,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from registry.meta.queries import upsert_module
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    tags,
)
from registry.projects.tables import projects
from registry.retention.decide import ManifestRow, RepositoryRows, TagRow
from registry.retention.rules import Rule
from registry.retention.tables import (
    manifest_pulls,
    retention_policies,
    retention_rules,
    retention_runs,
    tag_pulls,
)

IN_BATCH = 500


_EPOCH = datetime(1970, 1, 1)


def epoch(value: datetime | None) -> float | None:
    """A stored time as epoch seconds (SQLite gives them back without a zone: UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return (value - _EPOCH).total_seconds()
    return value.timestamp()


def iso(value: datetime | None) -> str | None:
    seconds = epoch(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def in_project(name: ColumnElement[str], project: str, default: str) -> ColumnElement[bool]:
    """Repositories (by ``name``) of ``project``: ``project/...``; for the default project
    also every name without a slash (as docs/projects.md says)."""
    own = name.like(_like_escape(project) + "/%", escape="\\")
    return or_(own, not_(name.like("%/%"))) if project == default else own


def relative_name(name: str, project: str, default: str) -> str:
    """A repository's name inside its project (``app`` for ``team/app``)."""
    if name.startswith(project + "/"):
        return name[len(project) + 1 :]
    return name  # a name without a slash, of the default project


# -- projects, rules and policies ------------------------------------------


def project_id(conn: Connection, project: str) -> int | None:
    found = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar()
    return None if found is None else int(found)


def _rule(row: Any) -> Rule:
    return Rule(
        kind=row.kind,
        repositories=tuple(json.loads(row.repositories)),
        exclude_repositories=tuple(json.loads(row.exclude_repositories)),
        tags=tuple(json.loads(row.tags)),
        exclude_tags=tuple(json.loads(row.exclude_tags)),
        count=row.count,
        days=row.days,
        untagged=row.untagged,
        id=int(row.id),
    )


def list_rules(conn: Connection, project_id: int) -> list[Rule]:
    rows = conn.execute(
        select(retention_rules)
        .where(retention_rules.c.project_id == project_id)
        .order_by(retention_rules.c.position, retention_rules.c.id)
    )
    return [_rule(r) for r in rows]


def _rule_row(project_id: int, position: int, rule: Rule) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "position": position,
        "repositories": json.dumps(list(rule.repositories)),
        "exclude_repositories": json.dumps(list(rule.exclude_repositories)),
        "tags": json.dumps(list(rule.tags)),
        "exclude_tags": json.dumps(list(rule.exclude_tags)),
        "kind": rule.kind,
        "count": rule.count,
        "days": rule.days,
        "untagged": rule.untagged,
        "created_at": datetime.now(UTC),
    }


def add_rule(conn: Connection, project_id: int, rule: Rule) -> Rule:
    """Append ``rule`` to the project's rules; the stored rule (with its id)."""
    last = conn.execute(
        select(retention_rules.c.position)
        .where(retention_rules.c.project_id == project_id)
        .order_by(retention_rules.c.position.desc())
        .limit(1)
    ).scalar()
    position = 0 if last is None else int(last) + 1
    new_id = conn.execute(
        insert(retention_rules)
        .values(_rule_row(project_id, position, rule))
        .returning(retention_rules.c.id)
    ).scalar_one()
    row = conn.execute(select(retention_rules).where(retention_rules.c.id == new_id)).one()
    return _rule(row)


def replace_rules(conn: Connection, project_id: int, rules: Sequence[Rule]) -> list[Rule]:
    conn.execute(delete(retention_rules).where(retention_rules.c.project_id == project_id))
    for position, rule in enumerate(rules):
        conn.execute(insert(retention_rules).values(_rule_row(project_id, position, rule)))
    return list_rules(conn, project_id)


def delete_rule(conn: Connection, project_id: int, rule_id: int) -> Rule | None:
    row = conn.execute(
        select(retention_rules).where(
            retention_rules.c.project_id == project_id, retention_rules.c.id == rule_id
        )
    ).first()
    if row is None:
        return None
    conn.execute(delete(retention_rules).where(retention_rules.c.id == rule_id))
    return _rule(row)


@dataclass(frozen=True, slots=True)
class Policy:
    schedule: str | None = None
    gc: bool = False


def get_policy(conn: Connection, project_id: int) -> Policy:
    row = conn.execute(
        select(retention_policies).where(retention_policies.c.project_id == project_id)
    ).first()
    return Policy() if row is None else Policy(row.schedule, bool(row.gc))


def set_policy(conn: Connection, project_id: int, policy: Policy) -> None:
    """Set the project's schedule and GC flag; a new or changed schedule counts its cron
    times from now (``last_due``), an unchanged one keeps its place."""
    row = conn.execute(
        select(retention_policies.c.schedule).where(retention_policies.c.project_id == project_id)
    ).first()
    if row is not None and row.schedule == policy.schedule:
        conn.execute(
            update(retention_policies)
            .where(retention_policies.c.project_id == project_id)
            .values(gc=policy.gc)
        )
        return
    stmt = upsert_module(conn.dialect.name).insert(retention_policies)
    conn.execute(
        stmt.values(
            project_id=project_id, schedule=policy.schedule, gc=policy.gc, last_due=time.time()
        ).on_conflict_do_update(
            index_elements=[retention_policies.c.project_id],
            set_={
                "schedule": stmt.excluded.schedule,
                "gc": stmt.excluded.gc,
                "last_due": stmt.excluded.last_due,
            },
        )
    )


@dataclass(frozen=True, slots=True)
class Scheduled:
    project: str
    project_id: int
    schedule: str
    gc: bool
    last_due: float | None


def scheduled(conn: Connection) -> list[Scheduled]:
    rows = conn.execute(
        select(
            projects.c.name,
            retention_policies.c.project_id,
            retention_policies.c.schedule,
            retention_policies.c.gc,
            retention_policies.c.last_due,
        )
        .select_from(retention_policies.join(projects))
        .where(retention_policies.c.schedule.is_not(None))
        .order_by(projects.c.name)
    )
    return [
        Scheduled(
            str(r.name),
            int(r.project_id),
            str(r.schedule),
            bool(r.gc),
            None if r.last_due is None else float(r.last_due),
        )
        for r in rows
    ]


def claim_due(conn: Connection, project_id: int, due: float, previous: float | None) -> bool:
    """Mark the cron time ``due`` as started for the project, if no node did: True for the
    one node that may start its run."""
    where = [retention_policies.c.project_id == project_id]
    if previous is None:
        where.append(retention_policies.c.last_due.is_(None))
    else:
        where.append(retention_policies.c.last_due == previous)
    result = conn.execute(update(retention_policies).where(*where).values(last_due=due))
    return bool(result.rowcount)


# -- pull times ------------------------------------------------------------


def _upsert_latest(conn: Connection, table: Table, key: tuple[str, str], rows: list[Any]) -> None:
    stmt = upsert_module(conn.dialect.name).insert(table)
    column = table.c.last_pulled_at
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in key],
        set_={
            "last_pulled_at": case(
                (stmt.excluded.last_pulled_at > column, stmt.excluded.last_pulled_at),
                else_=column,
            )
        },
    )
    for i in range(0, len(rows), IN_BATCH):
        conn.execute(stmt, rows[i : i + IN_BATCH])


def record_pulls(
    conn: Connection,
    manifest_seen: dict[tuple[str, str], datetime],
    tag_seen: dict[tuple[str, str], datetime],
) -> int:
    """Raise the last-pull times to those seen ((repository, digest or tag) -> time);
    pulls of repositories that are gone are dropped. Returns the rows written."""
    names = sorted({r for r, _ in manifest_seen} | {r for r, _ in tag_seen})
    ids: dict[str, int] = {}
    for i in range(0, len(names), IN_BATCH):
        part = names[i : i + IN_BATCH]
        for rid, name in conn.execute(
            select(repositories.c.id, repositories.c.name).where(repositories.c.name.in_(part))
        ):
            ids[str(name)] = int(rid)
    mrows = [
        {"repository_id": ids[r], "digest": d, "last_pulled_at": when}
        for (r, d), when in sorted(manifest_seen.items())
        if r in ids
    ]
    trows = [
        {"repository_id": ids[r], "tag": t, "last_pulled_at": when}
        for (r, t), when in sorted(tag_seen.items())
        if r in ids
    ]
    if mrows:
        _upsert_latest(conn, manifest_pulls, ("repository_id", "digest"), mrows)
    if trows:
        _upsert_latest(conn, tag_pulls, ("repository_id", "tag"), trows)
    return len(mrows) + len(trows)


@dataclass(frozen=True, slots=True)
class PullTimes:
    repository: str
    manifests: list[tuple[str, float]]  # (digest, last pulled)
    tags: list[tuple[str, str, float | None, float | None]]  # tag, digest, pushed, pulled


def pull_times(conn: Connection, repository: str) -> PullTimes | None:
    """A repository's tags (with push and last pull times) and its manifests' last pulls;
    None if there is no such repository."""
    rid = conn.execute(select(repositories.c.id).where(repositories.c.name == repository)).scalar()
    if rid is None:
        return None
    found_m = [
        (str(d), epoch(w) or 0.0)
        for d, w in conn.execute(
            select(manifest_pulls.c.digest, manifest_pulls.c.last_pulled_at)
            .where(manifest_pulls.c.repository_id == rid)
            .order_by(manifest_pulls.c.digest)
        )
    ]
    by_digest = dict(found_m)
    pulled_tags = {
        str(t): epoch(w)
        for t, w in conn.execute(
            select(tag_pulls.c.tag, tag_pulls.c.last_pulled_at).where(
                tag_pulls.c.repository_id == rid
            )
        )
    }
    rows = conn.execute(
        select(tags.c.name, manifests.c.digest, tags.c.updated_at)
        .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
        .where(tags.c.repository_id == rid)
        .order_by(tags.c.name)
    )
    found_t = [
        (str(n), str(d), epoch(u), _latest(pulled_tags.get(str(n)), by_digest.get(str(d))))
        for n, d, u in rows
    ]
    return PullTimes(repository, found_m, found_t)


def _latest(*times: float | None) -> float | None:
    seen = [t for t in times if t is not None]
    return max(seen) if seen else None


# -- the bulk read the decision is made from -------------------------------


def read_project(conn: Connection, project: str, default: str) -> list[RepositoryRows]:
    """Every repository of ``project`` with its tags (push and last pull times: a tag's
    own pulls or its manifest's) and manifests (children, subject): six queries."""
    where = in_project(repositories.c.name, project, default)
    repos: dict[int, RepositoryRows] = {}
    for rid, name in conn.execute(
        select(repositories.c.id, repositories.c.name).where(where).order_by(repositories.c.name)
    ):
        repos[int(rid)] = RepositoryRows(str(name), relative_name(str(name), project, default))
    if not repos:
        return []
    joined = manifests.join(repositories, repositories.c.id == manifests.c.repository_id)
    children: dict[int, list[str]] = {}
    for parent, child in conn.execute(
        select(manifest_children.c.parent_id, manifest_children.c.child_digest)
        .select_from(
            manifest_children.join(manifests, manifests.c.id == manifest_children.c.parent_id).join(
                repositories, repositories.c.id == manifests.c.repository_id
            )
        )
        .where(where)
    ):
        children.setdefault(int(parent), []).append(str(child))
    digest_of: dict[int, tuple[int, str]] = {}
    for mid, rid, digest, subject in conn.execute(
        select(
            manifests.c.id,
            manifests.c.repository_id,
            manifests.c.digest,
            manifests.c.subject_digest,
        )
        .select_from(joined)
        .where(where)
        .order_by(manifests.c.id)
    ):
        repo = repos[int(rid)]
        repo.manifests.append(
            ManifestRow(
                int(mid),
                str(digest),
                None if subject is None else str(subject),
                tuple(children.get(int(mid), ())),
            )
        )
        digest_of[int(mid)] = (int(rid), str(digest))
    m_pulled: dict[tuple[int, str], float] = {}
    for rid, digest, when in conn.execute(
        select(
            manifest_pulls.c.repository_id, manifest_pulls.c.digest, manifest_pulls.c.last_pulled_at
        )
        .select_from(
            manifest_pulls.join(repositories, repositories.c.id == manifest_pulls.c.repository_id)
        )
        .where(where)
    ):
        m_pulled[(int(rid), str(digest))] = epoch(when) or 0.0
    t_pulled: dict[tuple[int, str], float] = {}
    for rid, tag, when in conn.execute(
        select(tag_pulls.c.repository_id, tag_pulls.c.tag, tag_pulls.c.last_pulled_at)
        .select_from(tag_pulls.join(repositories, repositories.c.id == tag_pulls.c.repository_id))
        .where(where)
    ):
        t_pulled[(int(rid), str(tag))] = epoch(when) or 0.0
    for rid, name, mid, updated in conn.execute(
        select(tags.c.repository_id, tags.c.name, tags.c.manifest_id, tags.c.updated_at)
        .select_from(tags.join(repositories, repositories.c.id == tags.c.repository_id))
        .where(where)
    ):
        pulled = t_pulled.get((rid, name))
        key = digest_of.get(mid)
        if key is not None and (seen := m_pulled.get(key)) is not None:
            pulled = seen if pulled is None or seen > pulled else pulled
        repos[rid].tags.append(TagRow(name, mid, epoch(updated) or 0.0, pulled))
    return list(repos.values())


# the ids of the manifests a run removes, for the one query that sums what that frees
# (a temporary table of the reading connection, never part of the schema)
_going = Table("retention_going", MetaData(), Column("id", Integer, primary_key=True))


def freed_bytes(conn: Connection, going: Iterable[int]) -> int:
    """What removing the manifests ``going`` (ids) frees: the bytes of those manifests and
    of their blobs that no other manifest in the registry holds (a manifest of that digest
    that stays, or one that stays referencing it as a blob). The ids go into a temporary
    table of this connection; the database sums the rest in two queries."""
    ids = sorted(set(going))
    if not ids:
        return 0
    postgres = conn.dialect.name == "postgresql"
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS retention_going (id INTEGER PRIMARY KEY)"
        + (" ON COMMIT DROP" if postgres else "")
    )
    try:
        conn.execute(delete(_going))
        for i in range(0, len(ids), 5000):
            conn.execute(insert(_going), [{"id": n} for n in ids[i : i + 5000]])
        going_ids = select(_going.c.id)
        other_m = manifests.alias("other_m")
        other_mb = manifest_blobs.alias("other_mb")

        def held(digest: ColumnElement[str]) -> ColumnElement[bool]:
            by_manifest = (
                select(other_m.c.id)
                .where(other_m.c.digest == digest, other_m.c.id.not_in(going_ids))
                .exists()
            )
            by_link = (
                select(other_mb.c.manifest_id)
                .where(other_mb.c.digest == digest, other_mb.c.manifest_id.not_in(going_ids))
                .exists()
            )
            return or_(by_manifest, by_link)

        freed_blobs = (
            select(manifest_blobs.c.digest, blobs.c.size)
            .distinct()
            .select_from(
                _going.join(manifest_blobs, manifest_blobs.c.manifest_id == _going.c.id).join(
                    blobs, blobs.c.digest == manifest_blobs.c.digest
                )
            )
            .where(not_(held(manifest_blobs.c.digest)))
            .subquery()
        )
        blob_bytes = conn.execute(select(func.coalesce(func.sum(freed_blobs.c.size), 0))).scalar()
        freed_manifests = (
            select(manifests.c.digest, func.max(manifests.c.size).label("size"))
            .select_from(_going.join(manifests, manifests.c.id == _going.c.id))
            .where(not_(held(manifests.c.digest)))
            .group_by(manifests.c.digest)
            .subquery()
        )
        manifest_bytes = conn.execute(
            select(func.coalesce(func.sum(freed_manifests.c.size), 0))
        ).scalar()
    finally:
        if not postgres:  # PostgreSQL drops it with the transaction
            conn.exec_driver_sql("DROP TABLE IF EXISTS temp.retention_going")
    return int(blob_bytes or 0) + int(manifest_bytes or 0)


# -- runs ------------------------------------------------------------------


def insert_run(conn: Connection, project: str, trigger: str, dry_run: bool, gc: bool) -> int:
    return int(
        conn.execute(
            insert(retention_runs)
            .values(
                project=project,
                trigger=trigger,
                dry_run=dry_run,
                gc=gc,
                status="running",
                started_at=datetime.now(UTC),
                total=0,
                done=0,
            )
            .returning(retention_runs.c.id)
        ).scalar_one()
    )


def set_progress(conn: Connection, run_id: int, total: int, done: int) -> None:
    conn.execute(
        update(retention_runs).where(retention_runs.c.id == run_id).values(total=total, done=done)
    )


def finish_run(
    conn: Connection,
    run_id: int,
    status: str,
    summary: dict[str, Any],
    candidates: list[dict[str, Any]] | None,
) -> None:
    conn.execute(
        update(retention_runs)
        .where(retention_runs.c.id == run_id)
        .values(
            status=status,
            finished_at=datetime.now(UTC),
            summary=json.dumps(summary),
            candidates=None if candidates is None else json.dumps(candidates),
        )
    )


def run_json(row: Any, full: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": int(row.id),
        "project": row.project,
        "trigger": row.trigger,
        "dry_run": bool(row.dry_run),
        "gc": bool(row.gc),
        "status": row.status,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "progress": {"total": int(row.total), "done": int(row.done)},
        "summary": None if row.summary is None else json.loads(row.summary),
    }
    if full:
        found["candidates"] = None if row.candidates is None else json.loads(row.candidates)
    return found


def list_runs(conn: Connection, project: str, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(retention_runs)
        .where(retention_runs.c.project == project)
        .order_by(retention_runs.c.id.desc())
        .limit(limit)
    )
    return [run_json(r, False) for r in rows]


def get_run(conn: Connection, project: str, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(retention_runs).where(
            retention_runs.c.project == project, retention_runs.c.id == run_id
        )
    ).first()
    return None if row is None else run_json(row, True)
