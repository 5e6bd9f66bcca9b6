"""The projects tables, on the shared metadata (``registry.meta.tables.metadata``).

A repository belongs to the project named by its first path component (``team-a`` for
``team-a/app``); a repository without a slash belongs to the default project
(``projects.default``, ``library``). The project is found from the name, so the core's
``repositories`` table carries no project column.

- ``projects``: one row a project; ``quota_bytes`` NULL for no quota.
- ``project_members``: users and groups with a role in a project.
- ``project_revision``: one row whose ``revision`` every change of the two tables above
  raises, in the same transaction, so that every node sees when to reload its copy.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from registry.meta.tables import metadata, name_type

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(255), nullable=False, unique=True),
    Column("public", Boolean, nullable=False, default=False),
    Column("description", Text, nullable=False, default=""),
    Column("owner", String(255), nullable=True),
    Column("quota_bytes", BigInteger, nullable=True),
    Column("created_by", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

project_members = Table(
    "project_members",
    metadata,
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(8), primary_key=True),  # "user" or "group"
    Column("name", String(255), primary_key=True),
    Column("role", String(16), nullable=False),  # guest, developer, maintainer, owner
    Column("added_by", String(255), nullable=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Index("ix_project_members_member", "kind", "name"),
)

project_revision = Table(
    "project_revision",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("revision", Integer, nullable=False),
)
