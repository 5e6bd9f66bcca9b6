"""The ``robots`` and ``users`` tables, on the shared metadata (``registry.meta.tables``)."""

from __future__ import annotations

from sqlalchemy import (
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

robots = Table(
    "robots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(100), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("groups", Text, nullable=False, default="[]"),  # JSON list of group names
    Column("created_by", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # a project robot (``robot$PROJECT+NAME``, migration 0013): its project (NULL for a
    # system robot; deleting the project deletes its robots) and its permissions there,
    # a JSON list of {"repositories": [patterns inside the project], "actions": [...]}
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE", name="fk_robots_project_id"),
        nullable=True,
    ),
    Column("permissions", Text, nullable=False, default="[]"),
    Index("ix_robots_project_id", "project_id"),
)

# Local users (issue #15, Harbor's "database" auth mode), beside htpasswd and LDAP. The
# password is kept only as a slow salted hash (``password_hash``, argon2 or bcrypt in the
# hash's own text format); ``admin`` makes the user a system administrator.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(255), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("email", String(255), nullable=False, default=""),
    Column("admin", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_by", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
)
