"""The schema, as SQLAlchemy Core tables. Alembic migrations create it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql


def name_type(length: int) -> String:
    """A name compared and ordered byte by byte, as on SQLite, also on PostgreSQL.

    Tag and repository listings are in lexical order and paginate with ``name > last``;
    PostgreSQL would otherwise use the database's locale (``en_US``: ``a`` < ``B``).
    """
    return String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


metadata = MetaData()

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(150), ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_repository_blobs_digest", "digest"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("digest", String(150), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("subject_digest", String(150), nullable=True),
    Column("annotations", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
    Index("ix_manifests_digest", "digest"),
)

manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(150), primary_key=True),
    Index("ix_manifest_blobs_digest", "digest"),
)

manifest_children = Table(
    "manifest_children",
    metadata,
    Column(
        "parent_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("child_digest", String(150), primary_key=True),
    Index("ix_manifest_children_child", "child_digest"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", name_type(128), primary_key=True),
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_tags_manifest", "manifest_id"),
)

# Upload sessions opened by a POST and not yet finished, cancelled or purged (issue #13),
# for the caps on open sessions per repository and per caller (registry/meta/uploads.py).
# The bytes stay in storage (``uploads/<id>/``); ``started_at`` is epoch seconds.
upload_sessions = Table(
    "upload_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("caller", String(255), nullable=False),  # user:<name> or addr:<client address>
    Column("started_at", Float, nullable=False),
    Index("ix_upload_sessions_repository", "repository", "started_at"),
    Index("ix_upload_sessions_caller", "caller", "started_at"),
    Index("ix_upload_sessions_started", "started_at"),
)

# Content whose stored bytes failed a read-back check (issue #18: ``wharf scrub``): bad or
# missing bytes. The blob and manifest lookups leave a quarantined digest out (a NOT
# EXISTS folded into each query, registry/meta/queries.py), so clients get BLOB_UNKNOWN /
# MANIFEST_UNKNOWN instead of bad bytes; an upload of the digest, or a push of the
# manifest, writes good bytes and deletes the row (registry/meta/quarantine.py). The
# scrub feature (registry/scrub/) decides what goes in. ``found_at`` is epoch seconds.
blob_quarantine = Table(
    "blob_quarantine",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("reason", String(16), nullable=False),  # corrupt, missing
    Column("kind", String(16), nullable=False),  # blob, manifest
    Column("found_at", Float, nullable=False),
    Column("detail", Text, nullable=True),  # e.g. the digest the bytes have
)
