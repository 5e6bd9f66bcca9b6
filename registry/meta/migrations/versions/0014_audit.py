"""the audit log (issue #16): ``audit_records``

One row per recorded action: time (epoch seconds), actor, client address, user agent,
request id, action, outcome, project, repository, reference, digest and details (JSON).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def name_type(length: int) -> sa.String:
    """Byte-order comparison on PostgreSQL too, as ``registry.meta.tables.name_type``."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("addr", sa.String(64), nullable=True),
        sa.Column("useragent", sa.String(512), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("project", name_type(255), nullable=True),
        sa.Column("repository", name_type(255), nullable=True),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("digest", sa.String(150), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_records_time", "audit_records", ["time"])
    op.create_index("ix_audit_records_project_time", "audit_records", ["project", "time"])
    op.create_index("ix_audit_records_actor", "audit_records", ["actor"])
    op.create_index("ix_audit_records_action", "audit_records", ["action"])


def downgrade() -> None:
    op.drop_index("ix_audit_records_action", "audit_records")
    op.drop_index("ix_audit_records_actor", "audit_records")
    op.drop_index("ix_audit_records_project_time", "audit_records")
    op.drop_index("ix_audit_records_time", "audit_records")
    op.drop_table("audit_records")
