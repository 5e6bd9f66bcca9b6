"""The web UI's table: ``ui_secrets`` keeps the key that signs the web UI's session
cookies, shared by every worker and node."""

from __future__ import annotations

from sqlalchemy import Column, String, Table

from registry.meta.tables import metadata

ui_secrets = Table(
    "ui_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)
