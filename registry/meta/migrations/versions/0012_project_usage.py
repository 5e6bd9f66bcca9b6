"""usage per project for quotas (issue #15): what each project holds, counted from the
repositories already there

A project holds a digest when one of its repositories has it linked as a blob or has a
manifest with that digest (``project_blobs``, once per project); ``project_usage`` is the
sum of their sizes. A repository without a slash belongs to the default project,
``library``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DEFAULT_PROJECT = "library"


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _project(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else DEFAULT_PROJECT


def upgrade() -> None:
    held_table = op.create_table(
        "project_blobs",
        sa.Column("project", name_type(255), primary_key=True),
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_project_blobs_digest", "project_blobs", ["digest"])
    usage_table = op.create_table(
        "project_usage",
        sa.Column("project", name_type(255), primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    bind = op.get_bind()
    held: dict[str, dict[str, int]] = {}
    for query in (
        "SELECT r.name, rb.digest, b.size FROM repository_blobs rb"
        " JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest",
        "SELECT r.name, m.digest, m.size FROM manifests m"
        " JOIN repositories r ON r.id = m.repository_id",
    ):
        for name, digest, size in bind.execute(sa.text(query)):
            held.setdefault(_project(name), {})[digest] = int(size)
    rows = [{"project": p, "digest": d, "size": s} for p, f in held.items() for d, s in f.items()]
    for i in range(0, len(rows), 500):
        op.bulk_insert(held_table, rows[i : i + 500])
    usage = [{"project": p, "bytes": sum(f.values())} for p, f in held.items()]
    if usage:
        op.bulk_insert(usage_table, usage)


def downgrade() -> None:
    op.drop_table("project_usage")
    op.drop_index("ix_project_blobs_digest", table_name="project_blobs")
    op.drop_table("project_blobs")
