"""Tables of replication and the pull-through mirror (issue #6).

Replication: rules added through the API, runs, leases, pending on-push work, resumable
uploads. The mirror: the manifests fetched from upstreams, by tag and by digest, and when
each tag was last checked against its upstream; and the leases of the blob fetches under
way (``mirror_fetches``), one row per (upstream, digest).

Times are epoch seconds (floats): compared across nodes and dialects without time zones.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
)

from registry.meta.tables import metadata, name_type

replication_runs = Table(
    "replication_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", name_type(255), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("node", String(255), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("tags_copied", Integer, nullable=False, default=0),
    Column("tags_skipped", Integer, nullable=False, default=0),
    Column("tags_deleted", Integer, nullable=False, default=0),
    Column("blobs_copied", Integer, nullable=False, default=0),
    Column("blobs_skipped", Integer, nullable=False, default=0),
    Column("blobs_mounted", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("errors", Text, nullable=True),
    Index("ix_replication_runs_rule", "rule", "id"),
)

replication_leases = Table(
    "replication_leases",
    metadata,
    Column("rule", name_type(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", Float, nullable=False),
)

replication_pending = Table(
    "replication_pending",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", name_type(255), nullable=False),
    Column("repository", name_type(255), nullable=False),
    Column("tag", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_replication_pending_rule", "rule", "id"),
)

replication_uploads = Table(
    "replication_uploads",
    metadata,
    Column("rule", name_type(255), primary_key=True),
    Column("repository", name_type(255), primary_key=True),
    Column("digest", String(150), primary_key=True),
    Column("location", Text, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Rules added through ``/api/replication/rules`` (config rules are not stored): each the
# JSON of a ``replication.rules[]`` entry, credentials included (needed to connect).
replication_rules = Table(
    "replication_rules",
    metadata,
    Column("name", name_type(255), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(255), nullable=True),
)


# -- the pull-through mirror ----------------------------------------------------

mirror_manifests = Table(
    "mirror_manifests",
    metadata,
    Column("repository", name_type(255), primary_key=True),
    Column("reference", String(255), primary_key=True),  # a tag, or the digest itself
    Column("digest", String(150), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checked_at", Float, nullable=False),
    # eviction (#16): when the manifest was last pulled (a GET; set when fetched), and
    # whether the blobs it references are in ``mirror_manifest_blobs`` (rows cached
    # before 0017 are not: GC keeps their repository whole, as it did)
    Column("pulled_at", Float, nullable=False, server_default="0"),
    Column("blobs_known", Boolean, nullable=False, server_default=false()),
    Index("ix_mirror_manifests_digest", "repository", "digest"),
)

# The blobs (config, layers) a cached manifest references, noted when it is fetched: GC
# keeps their bytes while the manifest is cached (:class:`replicator.mirror_store.MirrorRoots`),
# eviction counts their sizes against an upstream's ``maxbytes``.
mirror_manifest_blobs = Table(
    "mirror_manifest_blobs",
    metadata,
    Column("repository", name_type(255), primary_key=True),
    Column("manifest", String(150), primary_key=True),
    Column("digest", String(150), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Index("ix_mirror_manifest_blobs_digest", "digest"),
)

# A blob being fetched from an upstream: who fetches it (until ``expires_at``, renewed
# while the fetch runs), into which upload, and how many bytes of it are readable there.
mirror_fetches = Table(
    "mirror_fetches",
    metadata,
    Column("upstream", String(255), primary_key=True),
    Column("digest", String(150), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("upload_id", String(64), nullable=True),
    Column("written", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("started_at", Float, nullable=False),
)
