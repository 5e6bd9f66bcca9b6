"""The audit log's table, on the shared metadata (``registry.meta.tables.metadata``).

``audit_records``: one row per recorded action (a push, a tag move, a delete, a login, a
token grant, a pull, an administrative change). ``time`` is epoch seconds (the server's
``time.time()``); ``details`` a JSON object of what else the action says (the previous
digest of a moved tag, the tags a delete removed, a login's source, a grant's scopes).
``id`` grows with every record: the API's pages go from the newest down by it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from registry.meta.tables import metadata, name_type

ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid

audit_records = Table(
    "audit_records",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("actor", String(255), nullable=True),
    Column("addr", String(64), nullable=True),
    Column("useragent", String(512), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("project", name_type(255), nullable=True),
    Column("repository", name_type(255), nullable=True),
    Column("reference", String(255), nullable=True),
    Column("digest", String(150), nullable=True),
    Column("details", Text, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_audit_records_time", audit_records.c.time)
Index("ix_audit_records_project_time", audit_records.c.project, audit_records.c.time)
Index("ix_audit_records_actor", audit_records.c.actor)
Index("ix_audit_records_action", audit_records.c.action)
