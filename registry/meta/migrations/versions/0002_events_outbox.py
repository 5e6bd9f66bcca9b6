"""event outbox, endpoint delivery state (issue #5)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite: an alias of the rowid


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("repository", name_type(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sqlite_autoincrement=True,  # a seq is never reused, even after pruning
    )
    op.create_index("ix_event_outbox_created", "event_outbox", ["created_at"])
    op.create_table(
        "event_deliveries",
        sa.Column("endpoint", sa.String(255), primary_key=True),
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("failed_at", TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_event_deliveries_seq", "event_deliveries", ["seq"])
    op.create_table(
        "event_endpoints",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("paused_until", TS, nullable=True),
        sa.Column("last_success", TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_at", TS, nullable=True),
        sa.Column("delivered", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_endpoints")
    op.drop_table("event_deliveries")
    op.drop_table("event_outbox")
