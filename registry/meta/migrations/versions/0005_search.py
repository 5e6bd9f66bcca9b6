"""search index (issue #8)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def name_type(length: int) -> sa.String:
    """Names ordered byte by byte on PostgreSQL too (COLLATE "C"), as listings need."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _manifest_id() -> sa.Column:
    return sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "search_tags",
        sa.Column(
            "repository_id",
            sa.Integer,
            sa.ForeignKey("repositories.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", name_type(128), primary_key=True),
        sa.Column("repository", name_type(255), nullable=False),
        sa.Column(
            "manifest_id",
            sa.Integer,
            sa.ForeignKey("manifests.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(150), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("pushed_at", TS, nullable=False),
    )
    op.create_index("ix_search_tags_name", "search_tags", ["repository", "tag"])
    op.create_index("ix_search_tags_tag", "search_tags", ["tag", "repository"])
    op.create_index("ix_search_tags_pushed", "search_tags", ["pushed_at", "repository", "tag"])
    op.create_index("ix_search_tags_manifest", "search_tags", ["manifest_id"])
    op.create_table(
        "search_facts",
        _manifest_id(),
        sa.Column("config_digest", sa.String(150), nullable=True),
        sa.Column("total_size", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    for name in ("search_labels", "search_annotations"):
        op.create_table(
            name,
            _manifest_id(),
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        op.create_index(f"ix_{name}_key", name, ["key", "value", "manifest_id"])
    op.create_table(
        "search_platforms",
        _manifest_id(),
        sa.Column("os", sa.String(64), primary_key=True),
        sa.Column("architecture", sa.String(64), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
    )
    op.create_index(
        "ix_search_platforms_platform",
        "search_platforms",
        ["os", "architecture", "variant", "manifest_id"],
    )
    op.create_table(
        "ui_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    # Tags pushed before this revision: one row each, so that searches by name, tag,
    # digest, media type and push time find them at once (`wharf search reindex` adds
    # labels, platforms and config facts, which need the config blobs).
    op.execute(
        "INSERT INTO search_tags (repository_id, tag, repository, manifest_id, digest,"
        " media_type, artifact_type, size, pushed_at)"
        " SELECT t.repository_id, t.name, r.name, m.id, m.digest, m.media_type,"
        " m.artifact_type, m.size, t.updated_at"
        " FROM tags t JOIN repositories r ON r.id = t.repository_id"
        " JOIN manifests m ON m.id = t.manifest_id"
    )


def downgrade() -> None:
    for table in (
        "ui_secrets",
        "search_platforms",
        "search_annotations",
        "search_labels",
        "search_facts",
        "search_tags",
    ):
        op.drop_table(table)
