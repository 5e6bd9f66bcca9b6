"""immutable tag rules per project (issue #16): ``immutable_rules``

A rule is a repository glob and a tag glob of one project; deleting the project deletes
its rules (ON DELETE CASCADE). One rule per project and pair of patterns.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "immutable_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.UniqueConstraint("project_id", "repository", "tag", name="uq_immutable_rules_patterns"),
    )
    op.create_index("ix_immutable_rules_project_id", "immutable_rules", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_immutable_rules_project_id", table_name="immutable_rules")
    op.drop_table("immutable_rules")
