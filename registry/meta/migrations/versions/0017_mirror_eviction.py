"""pull-through mirror cache eviction (issue #16): ``mirror_manifests.pulled_at`` and
``blobs_known``, and ``mirror_manifest_blobs``

A manifest cached before this revision counts as last pulled when its tag was last
checked (``checked_at``), and its blobs as unknown (``blobs_known`` false): GC keeps its
repository whole, as before, until eviction removes it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column(
        "mirror_manifests",
        sa.Column("pulled_at", sa.Float, nullable=False, server_default="0"),
    )
    op.add_column(
        "mirror_manifests",
        sa.Column("blobs_known", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE mirror_manifests SET pulled_at = checked_at")
    op.create_index("ix_mirror_manifests_digest", "mirror_manifests", ["repository", "digest"])
    op.create_table(
        "mirror_manifest_blobs",
        sa.Column("repository", name_type(255), primary_key=True),
        sa.Column("manifest", sa.String(150), primary_key=True),
        sa.Column("digest", sa.String(150), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_mirror_manifest_blobs_digest", "mirror_manifest_blobs", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_mirror_manifest_blobs_digest", "mirror_manifest_blobs")
    op.drop_table("mirror_manifest_blobs")
    op.drop_index("ix_mirror_manifests_digest", "mirror_manifests")
    with op.batch_alter_table("mirror_manifests") as batch:
        batch.drop_column("blobs_known")
        batch.drop_column("pulled_at")
