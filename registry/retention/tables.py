"""The retention feature's tables, on the shared metadata (``registry.meta.tables.metadata``).

- ``retention_rules``: a project's rules, in ``position`` order; patterns are JSON lists.
- ``retention_policies``: per project the cron ``schedule`` of its runs (NULL: on demand
  only), whether a scheduled run starts a GC after it, and ``last_due``: the cron time the
  last scheduled run was started for (the nodes agree on it with a conditional update).
- ``retention_runs``: every run, its progress and its summary (JSON).
- ``retention_leases``: who runs a project's retention now (``registry/meta/lease.py``).
- ``manifest_pulls`` and ``tag_pulls``: when each manifest and tag was last pulled,
  written in batches after the pulls (``registry/retention/pulls.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from registry.meta.tables import metadata, name_type

retention_rules = Table(
    "retention_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("repositories", Text, nullable=False),  # JSON list of globs inside the project
    Column("exclude_repositories", Text, nullable=False),
    Column("tags", Text, nullable=False),  # JSON list of globs or re:<regex>
    Column("exclude_tags", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("count", Integer, nullable=True),
    Column("days", Float, nullable=True),
    Column("untagged", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_retention_rules_project", "project_id", "position"),
)

retention_policies = Table(
    "retention_policies",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("schedule", String(100), nullable=True),
    Column("gc", Boolean, nullable=False, default=False),
    Column("last_due", Float, nullable=True),  # epoch seconds
)

retention_runs = Table(
    "retention_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", name_type(255), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("gc", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("total", Integer, nullable=False, default=0),  # removals decided
    Column("done", Integer, nullable=False, default=0),  # removals made so far
    Column("summary", Text, nullable=True),  # JSON
    Column("candidates", Text, nullable=True),  # JSON: what goes (would go)
    Index("ix_retention_runs_project", "project", "id"),
)

retention_leases = Table(
    "retention_leases",
    metadata,
    Column("project", name_type(255), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("run_id", Integer, nullable=True),
)

manifest_pulls = Table(
    "manifest_pulls",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(150), primary_key=True),
    Column("last_pulled_at", DateTime(timezone=True), nullable=False),
)

tag_pulls = Table(
    "tag_pulls",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tag", name_type(128), primary_key=True),
    Column("last_pulled_at", DateTime(timezone=True), nullable=False),
)
