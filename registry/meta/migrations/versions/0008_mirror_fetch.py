"""pull-through mirror: one fetch per blob across processes and nodes (issue #6)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_fetches",
        sa.Column("upstream", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("upload_id", sa.String(64), nullable=True),
        sa.Column("written", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mirror_fetches")
