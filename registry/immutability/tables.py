"""The immutability feature's table, on the shared metadata (``registry.meta.tables.metadata``).

- ``immutable_rules``: per project, a repository pattern and a tag pattern (globs, see
  :mod:`registry.immutability.rules`); a tag of the project's repositories that matches
  both may be pushed once and then neither moved nor deleted. Deleting the project
  deletes its rules (ON DELETE CASCADE).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, UniqueConstraint

from registry.meta.tables import metadata

immutable_rules = Table(
    "immutable_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("repository", String(255), nullable=False),
    Column("tag", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255), nullable=True),
    UniqueConstraint("project_id", "repository", "tag", name="uq_immutable_rules_patterns"),
    Index("ix_immutable_rules_project_id", "project_id"),
)
