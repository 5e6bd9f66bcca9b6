"""The quota feature's tables, on the shared metadata (``registry.meta.tables.metadata``).

- ``project_blobs``: each digest a project holds (a blob linked into one of its
  repositories, or a manifest of one), once however many of its repositories hold it,
  with its size.
- ``project_usage``: per project the sum of its ``project_blobs`` sizes, kept in the same
  transaction as every change; its row is what concurrent pushes into one project queue
  on. The quota itself is ``projects.quota_bytes`` (NULL: none).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table

from registry.meta.tables import metadata, name_type

project_blobs = Table(
    "project_blobs",
    metadata,
    Column("project", name_type(255), primary_key=True),
    Column("digest", String(150), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Index("ix_project_blobs_digest", "digest"),
)

project_usage = Table(
    "project_usage",
    metadata,
    Column("project", name_type(255), primary_key=True),
    Column("bytes", BigInteger, nullable=False),
)
