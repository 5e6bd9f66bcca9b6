"""Statements built once, with bound parameters, for the hot paths.

Building a SQLAlchemy statement and its cache key costs more than running it on
SQLite; these are built at first use and reused by every request.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from registry.meta.tables import (
    blob_quarantine,
    blobs,
    manifests,
    repositories,
    repository_blobs,
    tags,
)

MANIFEST_COLUMNS = (
    manifests.c.digest,
    manifests.c.media_type,
    manifests.c.size,
    manifests.c.artifact_type,
    manifests.c.annotations,
)
NO_LIMIT = 2**31 - 1


def not_quarantined(digest: Any) -> ColumnElement[bool]:
    """The condition "``digest`` (a column) is not in quarantine" (issue #18,
    ``registry/meta/quarantine.py``), folded into every lookup of content: one
    primary-key probe of a table that is empty unless a scrub found bad bytes."""
    return ~exists().where(blob_quarantine.c.digest == digest)


@cache
def repository_id() -> Any:
    """Parameters: ``name``."""
    return select(repositories.c.id).where(repositories.c.name == bindparam("name"))


@cache
def blob_size_in_repository() -> Any:
    """Parameters: ``name``, ``digest``."""
    return (
        select(blobs.c.size)
        .select_from(
            repositories.join(
                repository_blobs, repository_blobs.c.repository_id == repositories.c.id
            ).join(blobs, blobs.c.digest == repository_blobs.c.digest)
        )
        .where(
            repositories.c.name == bindparam("name"),
            repository_blobs.c.digest == bindparam("digest"),
            not_quarantined(repository_blobs.c.digest),
        )
    )


@cache
def manifest_by_tag() -> Any:
    """Parameters: ``name``, ``tag``."""
    return (
        select(*MANIFEST_COLUMNS)
        .select_from(
            repositories.join(manifests, manifests.c.repository_id == repositories.c.id).join(
                tags, tags.c.manifest_id == manifests.c.id
            )
        )
        .where(
            repositories.c.name == bindparam("name"),
            tags.c.name == bindparam("tag"),
            not_quarantined(manifests.c.digest),
        )
    )


@cache
def manifest_by_digest() -> Any:
    """Parameters: ``name``, ``digest``."""
    return (
        select(*MANIFEST_COLUMNS)
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(
            repositories.c.name == bindparam("name"),
            manifests.c.digest == bindparam("digest"),
            not_quarantined(manifests.c.digest),
        )
    )


@cache
def manifest_id() -> Any:
    """Parameters: ``repository_id``, ``digest``."""
    return select(manifests.c.id).where(
        manifests.c.repository_id == bindparam("repository_id"),
        manifests.c.digest == bindparam("digest"),
    )


@cache
def manifest_id_locked() -> Any:
    """:func:`manifest_id`, locking the row (``FOR UPDATE`` on PostgreSQL, nothing on SQLite).

    A delete locks the manifest before its tags, in the order a push takes them (the
    manifest row by its upsert, then the tag): concurrent pushes and deletes of one
    manifest queue instead of deadlocking.
    """
    return manifest_id().with_for_update()


@cache
def tag_page() -> Any:
    """Parameters: ``name``, ``last`` ('' for the first page), ``limit``."""
    return (
        select(tags.c.name)
        .select_from(repositories.join(tags, tags.c.repository_id == repositories.c.id))
        .where(repositories.c.name == bindparam("name"), tags.c.name > bindparam("last"))
        .order_by(tags.c.name)
        .limit(bindparam("limit"))
    )


def upsert_module(dialect: str) -> Any:
    """The dialect module whose ``insert`` has ``on_conflict_do_*`` (PostgreSQL or SQLite)."""
    return postgresql if dialect == "postgresql" else sqlite


@cache
def insert_ignore(table: Table, dialect: str) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``table`` (rows given at execution)."""
    return upsert_module(dialect).insert(table).on_conflict_do_nothing()


@cache
def tag_target() -> Any:
    """The digest a tag points at now. Parameters: ``repository_id``, ``name``."""
    return (
        select(manifests.c.digest)
        .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
        .where(tags.c.repository_id == bindparam("repository_id"), tags.c.name == bindparam("name"))
    )


@cache
def set_tag(dialect: str) -> Any:
    """Upsert of a tag. Parameters: ``repository_id``, ``name``, ``manifest_id``,
    ``updated_at``."""
    stmt = (
        upsert_module(dialect)
        .insert(tags)
        .values(
            repository_id=bindparam("repository_id"),
            name=bindparam("name"),
            manifest_id=bindparam("manifest_id"),
            updated_at=bindparam("updated_at"),
        )
    )
    return stmt.on_conflict_do_update(
        index_elements=[tags.c.repository_id, tags.c.name],
        set_={"manifest_id": stmt.excluded.manifest_id, "updated_at": stmt.excluded.updated_at},
    )


@cache
def upsert_manifest(dialect: str) -> Any:
    """Insert a manifest row, or keep the existing one; returns its ``id``.

    Parameters: the columns of ``manifests`` but ``id``. On a conflict the row is
    "updated" to itself, which on PostgreSQL locks it until the transaction ends: a
    concurrent delete of the same manifest cannot slip in between this statement and the
    rows that reference it (``ON CONFLICT DO NOTHING`` would return no id then).
    """
    stmt = (
        upsert_module(dialect)
        .insert(manifests)
        .values(
            {column.name: bindparam(column.name) for column in manifests.c if column.name != "id"}
        )
    )
    return stmt.on_conflict_do_update(
        index_elements=[manifests.c.repository_id, manifests.c.digest],
        set_={"digest": stmt.excluded.digest},
    ).returning(manifests.c.id)


@cache
def linked_blobs() -> Any:
    """Which of ``digests`` are linked to ``repository_id``."""
    return select(repository_blobs.c.digest).where(
        repository_blobs.c.repository_id == bindparam("repository_id"),
        repository_blobs.c.digest.in_(bindparam("digests", expanding=True)),
        not_quarantined(repository_blobs.c.digest),
    )


@cache
def linked_blob() -> Any:
    """Is ``digest`` linked to ``repository_id``?"""
    return select(repository_blobs.c.digest).where(
        repository_blobs.c.repository_id == bindparam("repository_id"),
        repository_blobs.c.digest == bindparam("digest"),
        not_quarantined(repository_blobs.c.digest),
    )


@cache
def present_manifest() -> Any:
    """Is ``digest`` a manifest of ``repository_id``?"""
    return select(manifests.c.digest).where(
        manifests.c.repository_id == bindparam("repository_id"),
        manifests.c.digest == bindparam("digest"),
        not_quarantined(manifests.c.digest),
    )


@cache
def present_manifests() -> Any:
    """Which of ``digests`` are manifests of ``repository_id``."""
    return select(manifests.c.digest).where(
        manifests.c.repository_id == bindparam("repository_id"),
        manifests.c.digest.in_(bindparam("digests", expanding=True)),
        not_quarantined(manifests.c.digest),
    )
