"""The web UI's SQL: its session signing key."""

from __future__ import annotations

from sqlalchemy import Connection, select

from registry.meta import direct
from registry.meta import queries as q
from registry.ui.tables import ui_secrets


def session_secret(conn: Connection, new: str) -> str:
    """The web UI's signing key: ``new`` if none was stored yet, else the stored one."""
    rows = [{"name": "session", "value": new}]
    direct.execute_many(conn, q.insert_ignore(ui_secrets, conn.dialect.name), rows)
    value: str = conn.execute(
        select(ui_secrets.c.value).where(ui_secrets.c.name == "session")
    ).scalar_one()
    return value
