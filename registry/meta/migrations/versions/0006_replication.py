"""replication rules and runs (issue #6)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "replication_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", name_type(255), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("tags_copied", sa.Integer, nullable=False),
        sa.Column("tags_skipped", sa.Integer, nullable=False),
        sa.Column("tags_deleted", sa.Integer, nullable=False),
        sa.Column("blobs_copied", sa.Integer, nullable=False),
        sa.Column("blobs_skipped", sa.Integer, nullable=False),
        sa.Column("blobs_mounted", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.Text, nullable=True),
    )
    op.create_index("ix_replication_runs_rule", "replication_runs", ["rule", "id"])
    op.create_table(
        "replication_leases",
        sa.Column("rule", name_type(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "replication_pending",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", name_type(255), nullable=False),
        sa.Column("repository", name_type(255), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_replication_pending_rule", "replication_pending", ["rule", "id"])
    op.create_table(
        "replication_uploads",
        sa.Column("rule", name_type(255), primary_key=True),
        sa.Column("repository", name_type(255), primary_key=True),
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "mirror_manifests",
        sa.Column("repository", name_type(255), primary_key=True),
        sa.Column("reference", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(150), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mirror_manifests")
    op.drop_table("replication_uploads")
    op.drop_index("ix_replication_pending_rule", "replication_pending")
    op.drop_table("replication_pending")
    op.drop_table("replication_leases")
    op.drop_index("ix_replication_runs_rule", "replication_runs")
    op.drop_table("replication_runs")
