"""SQL of the immutability feature: the rules, and the tag reads of the push guard.

Every function takes the caller's ``Connection``: the push's or delete's own transaction
(the guard and the hook), or one of the API's and the CLI's, where the rule changes and
their trail record commit together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, text

from registry.immutability.rules import Rule
from registry.immutability.tables import immutable_rules
from registry.meta.queries import upsert_module
from registry.meta.tables import manifests, repositories, tags
from registry.meta.trail import AdminChange, Trail
from registry.projects.tables import projects


@cache
def _rules_of() -> Any:
    r = immutable_rules
    return (
        select(r.c.id, projects.c.name, r.c.repository, r.c.tag, r.c.created_at, r.c.created_by)
        .select_from(r.join(projects, projects.c.id == r.c.project_id))
        .where(projects.c.name == bindparam("project"))
        .order_by(r.c.id)
    )


def _rule(row: Any) -> Rule:
    created = row[4]
    if created.tzinfo is None:  # SQLite gives naive datetimes back
        created = created.replace(tzinfo=UTC)
    return Rule(int(row[0]), str(row[1]), str(row[2]), str(row[3]), created, row[5])


def rules_of(conn: Connection, project: str) -> list[Rule]:
    """The rules of ``project``, oldest first (none for an unknown project)."""
    return [_rule(row) for row in conn.execute(_rules_of(), {"project": project})]


def project_known(conn: Connection, project: str) -> bool:
    found = conn.execute(select(projects.c.id).where(projects.c.name == project)).first()
    return found is not None


@cache
def _tag_digest() -> Any:
    return (
        select(manifests.c.digest)
        .select_from(
            tags.join(manifests, manifests.c.id == tags.c.manifest_id).join(
                repositories, repositories.c.id == tags.c.repository_id
            )
        )
        .where(repositories.c.name == bindparam("repository"), tags.c.name == bindparam("tag"))
    )


def tag_digest(conn: Connection, repository: str, tag: str) -> str | None:
    """The digest ``repository:tag`` points at now, or None."""
    found = conn.execute(_tag_digest(), {"repository": repository, "tag": tag}).scalar()
    return None if found is None else str(found)


def lock_tag(conn: Connection, repository: str, tag: str) -> None:
    """On PostgreSQL, hold a transaction lock on ``repository:tag`` so that two first
    pushes of one immutable tag queue: the second then reads the first's tag and is
    refused. (SQLite's writers are serialized already.)"""
    if conn.dialect.name != "postgresql":
        return
    key = hashlib.sha256(f"wharf.immutable:{repository}:{tag}".encode()).digest()[:8]
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:key)"),
        {"key": int.from_bytes(key, "big", signed=True)},
    )


def add_rule(
    conn: Connection,
    project: str,
    repository: str,
    tag: str,
    created_by: str | None,
    trail: Trail,
) -> Rule | str:
    """Add a rule to ``project``: the rule, or ``"project"`` (no such project) or
    ``"exists"`` (a rule with these patterns is there already)."""
    project_id = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar()
    if project_id is None:
        return "project"
    made = conn.execute(
        upsert_module(conn.dialect.name)
        .insert(immutable_rules)
        .values(
            project_id=project_id,
            repository=repository,
            tag=tag,
            created_at=datetime.now(UTC),
            created_by=created_by,
        )
        .on_conflict_do_nothing()
        .returning(immutable_rules.c.id)
    ).scalar()
    if made is None:
        return "exists"
    rule = next(r for r in rules_of(conn, project) if r.id == made)
    trail(
        conn,
        AdminChange(
            "immutable.rule.create",
            str(rule.id),
            project=project,
            details={"repository": repository, "tag": tag},
            actor=created_by,
        ),
    )
    return rule


def remove_rule(
    conn: Connection, project: str, rule_id: int, actor: str | None, trail: Trail
) -> Rule | str | None:
    """Remove rule ``rule_id`` of ``project``: the rule removed, ``"project"`` (no such
    project) or None (no such rule in it)."""
    if not project_known(conn, project):
        return "project"
    found = next((r for r in rules_of(conn, project) if r.id == rule_id), None)
    if found is None:
        return None
    conn.execute(delete(immutable_rules).where(immutable_rules.c.id == rule_id))
    trail(
        conn,
        AdminChange(
            "immutable.rule.delete",
            str(rule_id),
            project=project,
            details={"repository": found.repository, "tag": found.tag},
            actor=actor,
        ),
    )
    return found


def list_rules(conn: Connection, project: str) -> list[Rule] | None:
    """The rules of ``project``; None if there is no such project."""
    return rules_of(conn, project) if project_known(conn, project) else None


def immutable_among(
    conn: Connection, project: str, repository: str, tags: Iterable[str]
) -> set[str]:
    """Those of ``tags`` of ``repository`` (of ``project``) a rule holds."""
    rules = rules_of(conn, project)
    return {t for t in tags if any(r.matches(repository, t) for r in rules)} if rules else set()
