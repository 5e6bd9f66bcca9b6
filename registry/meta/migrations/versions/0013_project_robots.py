"""robot accounts scoped to a project (issue #15): ``robots.project_id`` and
``robots.permissions``

A system robot (every robot made before) has no project (NULL) and no permissions
(``[]``): nothing changes for it. A project robot (``robot$PROJECT+NAME``) points at its
project; deleting the project deletes its robots (ON DELETE CASCADE), so a project made
again under the same name never gives them access back. ``permissions`` is a JSON list of
``{"repositories": [patterns inside the project], "actions": [pull|push|delete]}``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite cannot add a foreign key to an existing table (the table is copied)
    with op.batch_alter_table("robots") as batch:
        batch.add_column(sa.Column("project_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("permissions", sa.Text, nullable=False, server_default="[]"))
        batch.create_foreign_key(
            "fk_robots_project_id", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_robots_project_id", ["project_id"])


def downgrade() -> None:
    with op.batch_alter_table("robots") as batch:
        batch.drop_index("ix_robots_project_id")
        batch.drop_constraint("fk_robots_project_id", type_="foreignkey")
        batch.drop_column("permissions")
        batch.drop_column("project_id")
