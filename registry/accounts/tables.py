"""The ``robots`` table, on the shared metadata (``registry.meta.tables.metadata``)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table, Text

from registry.meta.tables import metadata, name_type

robots = Table(
    "robots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(100), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("groups", Text, nullable=False, default="[]"),  # JSON list of group names
    Column("created_by", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)
