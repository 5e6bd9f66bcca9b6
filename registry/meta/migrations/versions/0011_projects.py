"""projects, their members, and every existing repository assigned to one (issue #15)

A repository belongs to the project named by its first path component; repositories
without a slash belong to the default project, ``library`` (a different
``projects.default`` is created when the registry starts). The projects made here are
private, with no owner and no members: what ``auth.policy`` gave before, it still gives.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFAULT_PROJECT = "library"


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", name_type(255), nullable=False, unique=True),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("quota_bytes", sa.BigInteger, nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "project_members",
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_project_members_member", "project_members", ["kind", "name"])
    revisions = op.create_table(
        "project_revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.bulk_insert(revisions, [{"id": 1, "revision": 1}])

    names = sa.table("repositories", sa.column("name", sa.String))
    found = {
        name.split("/", 1)[0] if "/" in name else DEFAULT_PROJECT
        for (name,) in op.get_bind().execute(sa.select(names.c.name))
    }
    now = datetime.now(UTC)
    op.bulk_insert(
        projects,
        [
            {
                "name": name,
                "public": False,
                "description": "",
                "owner": None,
                "quota_bytes": None,
                "created_by": "migration",
                "created_at": now,
                "updated_at": now,
            }
            for name in sorted(found)
        ],
    )


def downgrade() -> None:
    op.drop_table("project_revision")
    op.drop_table("project_members")
    op.drop_table("projects")
