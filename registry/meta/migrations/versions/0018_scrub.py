"""the integrity scrub (issue #18): ``blob_quarantine`` (content whose stored bytes
failed a read-back check, left out of every lookup until pushed again), ``scrub_runs``
(one row per scrub run: state, the cursor it resumes from, counts) and ``scrub_lease``
(one run at a time across processes and nodes)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_quarantine",
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("found_at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_table(
        "scrub_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("rate", sa.BigInteger, nullable=False),
        sa.Column("cursor", sa.String(150), nullable=False, server_default=""),
        sa.Column("checked", sa.Integer, nullable=False, server_default="0"),
        sa.Column("checked_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bad", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_scrub_runs_state", "scrub_runs", ["state"])
    op.create_table(
        "scrub_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scrub_lease")
    op.drop_index("ix_scrub_runs_state", table_name="scrub_runs")
    op.drop_table("scrub_runs")
    op.drop_table("blob_quarantine")
