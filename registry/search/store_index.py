"""The search index's writes: the change hook inside every push and delete
transaction (:func:`apply_change`), and what ``wharf search reindex`` runs
(:func:`backfill_tags` fills ``search_tags`` from ``tags``; :func:`unindexed_manifests`
and :func:`write_facts` add the facts of manifests pushed before the index existed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select

from registry.meta import direct
from registry.meta import queries as q
from registry.meta.changes import Change
from registry.meta.tables import manifests, repositories, tags
from registry.search.tables import (
    search_annotations,
    search_facts,
    search_labels,
    search_platforms,
    search_tags,
)

MAX_VALUE = 500  # label and annotation values are cut to this many characters (indexed)
MAX_PAIRS = 256  # and at most this many of each are indexed per manifest


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    direct.execute_many(conn, q.insert_ignore(table, conn.dialect.name), rows)


# -- writes (inside the push/delete transaction) ---------------------------


# Statements of the push path, built once: they run inside every manifest push.
@cache
def _manifest_row_query() -> Any:
    return (
        select(manifests, repositories.c.name.label("repository"))
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(repositories.c.name == bindparam("name"), manifests.c.digest == bindparam("digest"))
    )


@cache
def _delete_facts(table: Table) -> Any:
    return delete(table).where(table.c.manifest_id == bindparam("id"))


def _manifest_row(conn: Connection, repository: str, digest: str) -> Any:
    return conn.execute(_manifest_row_query(), {"name": repository, "digest": digest}).first()


def _pairs(manifest_id: int, raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, dict):
        return []
    items = [(str(k)[:255], str(v)[:MAX_VALUE]) for k, v in raw.items()][:MAX_PAIRS]
    return [{"manifest_id": manifest_id, "key": k, "value": v} for k, v in items]


def _platform_rows(manifest_id: int, raw: object) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict):
            continue
        os_, arch = str(p.get("os") or ""), str(p.get("architecture") or "")
        if not os_ or not arch or "unknown" in (os_, arch):
            continue  # attestation manifests of buildx indexes say unknown/unknown
        variant = str(p.get("variant") or "")
        rows[(os_, arch, variant)] = {
            "manifest_id": manifest_id,
            "os": os_[:64],
            "architecture": arch[:64],
            "variant": variant[:64],
        }
    return list(rows.values())


MAX_TOTAL = 2**63 - 1


def _write_facts(
    conn: Connection, manifest_id: int, repo_id: int, details: dict[str, Any], again: bool
) -> None:
    """Store the facts of one manifest from ``details`` (see registry.search.facts):
    ``again`` replaces those stored; else facts stored already are kept (a manifest
    pushed again, same digest in the same repository, has the same facts)."""
    if again:
        for table in (search_facts, search_labels, search_annotations, search_platforms):
            conn.execute(_delete_facts(table), {"id": manifest_id})
    detail = details.get("detail") or {}
    children = details.get("children")
    total = details.get("total_size")
    if isinstance(children, list) and children:
        child_ids = select(manifests.c.id).where(
            manifests.c.repository_id == repo_id, manifests.c.digest.in_(children)
        )
        sizes = conn.execute(
            select(search_facts.c.total_size).where(
                search_facts.c.manifest_id.in_(child_ids), search_facts.c.total_size.isnot(None)
            )
        ).scalars()
        # added up here: a SQL sum() of sizes near the 64-bit limit overflows in the database
        known = [int(size) for size in sizes]
        total = sum(known) if known else None
    if total is not None and not 0 <= int(str(total)) <= MAX_TOTAL:
        total = None  # more than a signed 64-bit column holds: no total
    facts = {
        "manifest_id": manifest_id,
        "config_digest": details.get("config_digest"),
        "total_size": None if total is None else int(str(total)),
        "detail": json.dumps(detail),
    }
    if not direct.execute(conn, q.insert_ignore(search_facts, conn.dialect.name), facts):
        return  # stored already
    _insert_ignore(conn, search_labels, _pairs(manifest_id, details.get("labels")))
    _insert_ignore(conn, search_annotations, _pairs(manifest_id, details.get("annotations")))
    _insert_ignore(conn, search_platforms, _platform_rows(manifest_id, details.get("platforms")))
    if isinstance(children, list) and children:
        # an index: its children's labels and platforms, as stored when they were pushed
        for table, columns in (
            (search_platforms, ("os", "architecture", "variant")),
            (search_labels, ("key", "value")),
        ):
            found = conn.execute(
                select(*(table.c[c] for c in columns))
                .where(table.c.manifest_id.in_(child_ids))
                .distinct()
            ).all()
            rows = [
                {"manifest_id": manifest_id, **dict(zip(columns, r, strict=True))} for r in found
            ]
            _insert_ignore(conn, table, rows)


@dataclass(frozen=True, slots=True)
class _Pushed:
    """The manifest a push wrote, as the index needs it."""

    repository_id: int
    repository: str
    id: int
    digest: str
    media_type: str
    artifact_type: str | None
    size: int


@cache
def _upsert_tag(dialect: str) -> Any:
    stmt = q.upsert_module(dialect).insert(search_tags)
    return stmt.on_conflict_do_update(
        index_elements=[search_tags.c.repository_id, search_tags.c.tag],
        set_={
            c: stmt.excluded[c]
            for c in ("manifest_id", "digest", "media_type", "artifact_type", "size", "pushed_at")
        },
    )


def _pushed(conn: Connection, change: Change) -> _Pushed | None:
    new = change.manifest
    if new is not None and change.manifest_id is not None and change.repository_id is not None:
        return _Pushed(
            change.repository_id,
            change.repository,
            change.manifest_id,
            new.digest,
            new.media_type,
            new.artifact_type,
            new.size,
        )
    row = _manifest_row(conn, change.repository, change.digest)
    if row is None:
        return None
    return _Pushed(
        row.repository_id,
        row.repository,
        row.id,
        row.digest,
        row.media_type,
        row.artifact_type,
        row.size,
    )


def _tag_row(row: Any, tag: str, pushed_at: datetime) -> dict[str, Any]:
    return {
        "repository_id": row.repository_id,
        "tag": tag,
        "repository": row.repository,
        "manifest_id": row.id,
        "digest": row.digest,
        "media_type": row.media_type,
        "artifact_type": row.artifact_type,
        "size": row.size,
        "pushed_at": pushed_at,
    }


def apply_change(conn: Connection, change: Change) -> None:
    """Keep the index current with one change (the store calls this as a ChangeHook)."""
    if change.kind == "manifest" and change.action == "push":
        pushed = _pushed(conn, change)
        if pushed is None:
            return
        if "detail" in change.details:  # facts read at push (registry.search.facts)
            _write_facts(conn, pushed.id, pushed.repository_id, dict(change.details), False)
        if change.tag is not None:
            row = _tag_row(pushed, change.tag, _now())
            direct.execute(conn, _upsert_tag(conn.dialect.name), row)
    elif change.kind == "manifest" and change.action == "delete":
        # the manifest row is gone (ON DELETE CASCADE removes the rest on PostgreSQL and
        # on SQLite with foreign keys on); remove by repository and digest to be sure
        repo_id = conn.execute(q.repository_id(), {"name": change.repository}).scalar()
        conn.execute(
            delete(search_tags).where(
                search_tags.c.repository_id == repo_id, search_tags.c.digest == change.digest
            )
        )
    elif change.kind == "tag" and change.action == "delete":
        repo_id = conn.execute(q.repository_id(), {"name": change.repository}).scalar()
        conn.execute(
            delete(search_tags).where(
                search_tags.c.repository_id == repo_id, search_tags.c.tag == change.tag
            )
        )


def backfill_tags(conn: Connection) -> int:
    """Add a ``search_tags`` row for every tag that has none (tags pushed before the
    index existed, or while it was not maintained); returns how many were added."""
    missing = (
        select(
            tags.c.repository_id,
            tags.c.name,
            repositories.c.name,
            manifests.c.id,
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.artifact_type,
            manifests.c.size,
            tags.c.updated_at,
        )
        .select_from(
            tags.join(repositories, repositories.c.id == tags.c.repository_id).join(
                manifests, manifests.c.id == tags.c.manifest_id
            )
        )
        .where(
            ~select(search_tags.c.tag)
            .where(
                search_tags.c.repository_id == tags.c.repository_id,
                search_tags.c.tag == tags.c.name,
            )
            .exists()
        )
    )
    columns = [
        "repository_id",
        "tag",
        "repository",
        "manifest_id",
        "digest",
        "media_type",
        "artifact_type",
        "size",
        "pushed_at",
    ]
    result = conn.execute(insert(search_tags).from_select(columns, missing))
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Unindexed:
    """A manifest without facts: what reindexing needs to compute them."""

    repository: str
    digest: str
    media_type: str


def unindexed_manifests(conn: Connection, limit: int) -> list[Unindexed]:
    """Manifests without a ``search_facts`` row, images before indexes."""
    is_index = manifests.c.media_type.in_(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    rows = conn.execute(
        select(repositories.c.name, manifests.c.digest, manifests.c.media_type)
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(
            ~select(search_facts.c.manifest_id)
            .where(search_facts.c.manifest_id == manifests.c.id)
            .exists()
        )
        .order_by(is_index, manifests.c.id)
        .limit(limit)
    ).all()
    return [Unindexed(r[0], r[1], r[2]) for r in rows]


def write_facts(conn: Connection, repository: str, digest: str, details: dict[str, Any]) -> bool:
    """Store the facts of one manifest (reindexing); False if it is gone."""
    row = _manifest_row(conn, repository, digest)
    if row is None:
        return False
    _write_facts(conn, row.id, row.repository_id, details, True)
    return True
