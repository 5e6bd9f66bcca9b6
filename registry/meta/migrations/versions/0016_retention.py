"""tag retention (issue #16): rules, schedules, runs and their lease per project; when
each manifest and tag was last pulled

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "retention_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("repositories", sa.Text, nullable=False),
        sa.Column("exclude_repositories", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("exclude_tags", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer, nullable=True),
        sa.Column("days", sa.Float, nullable=True),
        sa.Column("untagged", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_retention_rules_project", "retention_rules", ["project_id", "position"])
    op.create_table(
        "retention_policies",
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("schedule", sa.String(100), nullable=True),
        sa.Column("gc", sa.Boolean, nullable=False),
        sa.Column("last_due", sa.Float, nullable=True),
    )
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", name_type(255), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("gc", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("candidates", sa.Text, nullable=True),
    )
    op.create_index("ix_retention_runs_project", "retention_runs", ["project", "id"])
    op.create_table(
        "retention_leases",
        sa.Column("project", name_type(255), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "manifest_pulls",
        sa.Column(
            "repository_id",
            sa.Integer,
            sa.ForeignKey("repositories.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tag_pulls",
        sa.Column(
            "repository_id",
            sa.Integer,
            sa.ForeignKey("repositories.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", name_type(128), primary_key=True),
        sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tag_pulls")
    op.drop_table("manifest_pulls")
    op.drop_table("retention_leases")
    op.drop_index("ix_retention_runs_project", table_name="retention_runs")
    op.drop_table("retention_runs")
    op.drop_table("retention_policies")
    op.drop_index("ix_retention_rules_project", table_name="retention_rules")
    op.drop_table("retention_rules")
