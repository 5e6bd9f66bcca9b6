"""The search index's tables (issue #8).

``search_tags`` holds one row per tag with what a result row shows (repository, tag,
digest, media and artifact type, size, push time), so a search is one indexed table plus
``IN`` filters. Facts read from an image at push time live per manifest:
``search_facts`` (config digest, platform, the JSON the image page shows),
``search_labels``, ``search_annotations`` and ``search_platforms`` (an index gets its
children's platforms and labels). :mod:`registry.search.store_index` keeps them current.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from registry.meta.tables import metadata, name_type

search_tags = Table(
    "search_tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tag", name_type(128), primary_key=True),
    Column("repository", name_type(255), nullable=False),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("digest", String(150), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("pushed_at", DateTime(timezone=True), nullable=False),
    Index("ix_search_tags_name", "repository", "tag"),
    Index("ix_search_tags_tag", "tag", "repository"),
    Index("ix_search_tags_pushed", "pushed_at", "repository", "tag"),
    Index("ix_search_tags_manifest", "manifest_id"),
)

search_facts = Table(
    "search_facts",
    metadata,
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("config_digest", String(150), nullable=True),
    Column("total_size", BigInteger, nullable=True),  # config and layers (of all children)
    Column("detail", Text, nullable=False),
)


def _pair_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "manifest_id",
            Integer,
            ForeignKey("manifests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("key", String(255), primary_key=True),
        Column("value", Text, nullable=False),
        Index(f"ix_{name}_key", "key", "value", "manifest_id"),
    )


search_labels = _pair_table("search_labels")
search_annotations = _pair_table("search_annotations")

search_platforms = Table(
    "search_platforms",
    metadata,
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("os", String(64), primary_key=True),
    Column("architecture", String(64), primary_key=True),
    Column("variant", String(64), primary_key=True),  # '' when none
    Index("ix_search_platforms_platform", "os", "architecture", "variant", "manifest_id"),
)
