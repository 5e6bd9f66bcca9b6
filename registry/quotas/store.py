"""SQL of the quota feature: what each project holds, its usage and its quota.

A project holds a digest when one of its repositories has it linked as a blob
(``repository_blobs``) or has a manifest with that digest; it is counted once per project
with its size. Every function takes the caller's ``Connection``: the change hook's (the
push's own transaction), GC's deleting transaction, or one of the API's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    delete,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)

from registry.content.names import project_of
from registry.meta import direct
from registry.meta.queries import upsert_module
from registry.meta.tables import blobs, manifests, repositories, repository_blobs
from registry.projects.tables import project_revision, projects
from registry.quotas.tables import project_blobs, project_usage

IN_BATCH = 500


@cache
def _insert_held(dialect: str) -> Any:
    return (
        upsert_module(dialect)
        .insert(project_blobs)
        .values(project=bindparam("project"), digest=bindparam("digest"), size=bindparam("size"))
        .on_conflict_do_nothing()
    )


@cache
def _bump(dialect: str) -> Any:
    """Add ``size`` to a project's usage (the row made if missing), locking the row until
    the transaction ends; returns the new usage."""
    stmt = (
        upsert_module(dialect)
        .insert(project_usage)
        .values(project=bindparam("project"), bytes=bindparam("size"))
    )
    return stmt.on_conflict_do_update(
        index_elements=[project_usage.c.project],
        set_={"bytes": project_usage.c.bytes + stmt.excluded.bytes},
    ).returning(project_usage.c.bytes)


@cache
def _quota() -> Any:
    return select(projects.c.quota_bytes).where(projects.c.name == bindparam("project"))


@dataclass(frozen=True, slots=True)
class Added:
    """A digest new to a project: its usage before and after, and its quota then."""

    project: str
    size: int
    before: int
    after: int
    quota: int | None


def add(conn: Connection, project: str, digest: str, size: int) -> Added | None:
    """Count ``digest`` in ``project`` unless it holds it already (then None: nothing
    changes, no lock is taken on the usage row). The usage row stays locked until the
    caller's transaction ends, so the quota read after it is checked against a usage no
    concurrent push can change meanwhile."""
    params = {"project": project, "digest": digest, "size": size}
    if not direct.execute(conn, _insert_held(conn.dialect.name), params):
        return None
    after = int(direct.scalar(conn, _bump(conn.dialect.name), {"project": project, "size": size}))
    row = direct.first(conn, _quota(), {"project": project})
    quota = None if row is None or row[0] is None else int(row[0])
    return Added(project, size, after - size, after, quota)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def in_project(name: ColumnElement[str], project: str, default: str) -> ColumnElement[bool]:
    """Repositories (by ``name``) of ``project``: ``project/...``; for the default project
    also every name without a slash."""
    own = name.like(_like_escape(project) + "/%", escape="\\")
    return or_(own, not_(name.like("%/%"))) if project == default else own


def holds(conn: Connection, project: str, digest: str, default: str) -> bool:
    """Does a repository of ``project`` still hold ``digest`` (a link or a manifest)?"""
    where = in_project(repositories.c.name, project, default)
    for table in (repository_blobs, manifests):
        found = conn.execute(
            select(literal(1))
            .select_from(table.join(repositories, repositories.c.id == table.c.repository_id))
            .where(table.c.digest == digest, where)
            .limit(1)
        ).first()
        if found is not None:
            return True
    return False


def release(conn: Connection, pairs: Iterable[tuple[str, str]], default: str) -> dict[str, int]:
    """(project, digest) pairs that may have lost a holder: those no repository of the
    project holds any more are uncounted. Returns the bytes taken off per project."""
    freed: dict[str, int] = {}
    for project, digest in sorted(set(pairs)):
        if holds(conn, project, digest, default):
            continue
        size = conn.execute(
            delete(project_blobs)
            .where(project_blobs.c.project == project, project_blobs.c.digest == digest)
            .returning(project_blobs.c.size)
        ).scalar()
        if size is not None:
            freed[project] = freed.get(project, 0) + int(size)
    for project, size in sorted(freed.items()):
        conn.execute(
            update(project_usage)
            .where(project_usage.c.project == project)
            .values(bytes=project_usage.c.bytes - size)
        )
    return freed


def holders(conn: Connection, digests: Sequence[str]) -> list[tuple[str, str]]:
    """The (project, digest) rows of ``digests``."""
    found: list[tuple[str, str]] = []
    unique = sorted(set(digests))
    for i in range(0, len(unique), IN_BATCH):
        part = unique[i : i + IN_BATCH]
        found += [
            (str(p), str(d))
            for p, d in conn.execute(
                select(project_blobs.c.project, project_blobs.c.digest).where(
                    project_blobs.c.digest.in_(part)
                )
            )
        ]
    return found


# -- recount ---------------------------------------------------------------


def held_from_scratch(conn: Connection, default: str) -> dict[str, dict[str, int]]:
    """What every project holds, read from the repositories: {project: {digest: size}}."""
    held: dict[str, dict[str, int]] = {}
    links = select(repositories.c.name, repository_blobs.c.digest, blobs.c.size).select_from(
        repository_blobs.join(
            repositories, repositories.c.id == repository_blobs.c.repository_id
        ).join(blobs, blobs.c.digest == repository_blobs.c.digest)
    )
    own = select(repositories.c.name, manifests.c.digest, manifests.c.size).select_from(
        manifests.join(repositories, repositories.c.id == manifests.c.repository_id)
    )
    for query in (links, own):
        for name, digest, size in conn.execute(query):
            held.setdefault(project_of(name, default), {})[digest] = int(size)
    return held


def recount(conn: Connection, default: str) -> dict[str, tuple[int, int]]:
    """Recompute every project's holdings and usage from the repositories, in the
    caller's transaction; returns {project: (usage before, usage now)}."""
    if conn.dialect.name == "postgresql":
        # pushes wait (their hook's INSERT) until the recount commits; one that already
        # counted a blob is waited for here
        conn.exec_driver_sql("LOCK TABLE project_blobs, project_usage IN EXCLUSIVE MODE")
    before = {str(p): int(b) for p, b in conn.execute(select(project_usage))}
    held = held_from_scratch(conn, default)
    conn.execute(delete(project_blobs))
    conn.execute(delete(project_usage))
    rows = [
        {"project": p, "digest": d, "size": s}
        for p, found in held.items()
        for d, s in found.items()
    ]
    for i in range(0, len(rows), IN_BATCH):
        conn.execute(insert(project_blobs), rows[i : i + IN_BATCH])
    after = {p: sum(found.values()) for p, found in held.items()}
    if after:
        conn.execute(insert(project_usage), [{"project": p, "bytes": b} for p, b in after.items()])
    return {p: (before.get(p, 0), after.get(p, 0)) for p in sorted({*before, *after})}


# -- reads and the quota ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    project: str
    bytes: int
    shared_bytes: int
    quota: int | None
    repositories: int

    @property
    def percent(self) -> float | None:
        if self.quota is None:
            return None
        if self.quota == 0:
            return 0.0 if self.bytes == 0 else 100.0
        return round(100.0 * self.bytes / self.quota, 2)


def project_known(conn: Connection, project: str) -> tuple[bool, int | None]:
    """(whether ``project`` has a row, its quota)."""
    row = conn.execute(_quota(), {"project": project}).first()
    return (False, None) if row is None else (True, None if row[0] is None else int(row[0]))


def usage(conn: Connection, project: str, default: str) -> Usage:
    """One project's usage (zero for a project that holds nothing)."""
    _, quota = project_known(conn, project)
    used = conn.execute(
        select(project_usage.c.bytes).where(project_usage.c.project == project)
    ).scalar()
    other = project_blobs.alias("other")
    shared = conn.execute(
        select(func.coalesce(func.sum(project_blobs.c.size), 0)).where(
            project_blobs.c.project == project,
            select(literal(1))
            .where(other.c.digest == project_blobs.c.digest, other.c.project != project)
            .exists(),
        )
    ).scalar()
    count = conn.execute(
        select(func.count())
        .select_from(repositories)
        .where(in_project(repositories.c.name, project, default))
    ).scalar()
    return Usage(project, int(used or 0), int(shared or 0), quota, int(count or 0))


def usages(conn: Connection, default: str) -> list[Usage]:
    """Every project with a row or a usage, by name."""
    names = set(conn.execute(select(projects.c.name)).scalars())
    names |= set(conn.execute(select(project_usage.c.project)).scalars())
    return [usage(conn, str(n), default) for n in sorted(names)]


def set_quota(conn: Connection, project: str, quota: int | None) -> bool:
    """Set (None: remove) a project's quota; False if there is no such project."""
    result = conn.execute(
        update(projects)
        .where(projects.c.name == project)
        .values(quota_bytes=quota, updated_at=datetime.now(UTC))
    )
    if not result.rowcount:
        return False
    # the projects table's contract: every change raises the revision (nodes reload)
    conn.execute(
        update(project_revision)
        .where(project_revision.c.id == 1)
        .values(revision=project_revision.c.revision + 1)
    )
    return True


def usage_if_known(conn: Connection, project: str, default: str) -> Usage | None:
    """A project's usage; None if it has no row and holds nothing."""
    known, _ = project_known(conn, project)
    found = usage(conn, project, default)
    return found if known or found.bytes or found.repositories else None


def set_quota_and_read(
    conn: Connection, project: str, quota: int | None, default: str
) -> Usage | None:
    """Set a project's quota and read its usage; None if there is no such project."""
    return usage(conn, project, default) if set_quota(conn, project, quota) else None
