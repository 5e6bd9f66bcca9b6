"""open upload sessions, for the caps per repository and per caller (issue #13)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_upload_sessions_repository", "upload_sessions", ["repository", "started_at"]
    )
    op.create_index("ix_upload_sessions_caller", "upload_sessions", ["caller", "started_at"])
    op.create_index("ix_upload_sessions_started", "upload_sessions", ["started_at"])


def downgrade() -> None:
    op.drop_table("upload_sessions")
