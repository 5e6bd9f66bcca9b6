"""Tables of the event outbox (issue #5): events written in the transaction of the change
they describe, and each endpoint's delivery state.

- ``event_outbox``: one row per event, ``seq`` ascending in commit order for changes that
  touch the same rows (they serialise on row locks), kept ``notifications.retention`` for
  replay through ``/api/events``.
- ``event_deliveries``: one row per (endpoint, event) still to deliver (``pending``) or
  given up on (``dead``); a delivered event's row is deleted. Rows, not a cursor: on
  PostgreSQL a transaction may commit after one with a higher ``seq`` was read, and a
  cursor would skip it.
- ``event_endpoints``: per endpoint the lease (which process sends for it now), the
  consecutive failures, the pause, and the last success and error, shared by all workers
  and nodes.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text

from registry.meta.tables import metadata, name_type

TS = DateTime(timezone=True)
SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid

event_outbox = Table(
    "event_outbox",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("action", String(16), nullable=False),
    Column("repository", name_type(255), nullable=False),
    Column("body", Text, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_event_outbox_created", event_outbox.c.created_at)

event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("endpoint", String(255), primary_key=True),
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("status", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("failed_at", TS, nullable=True),
    Column("last_error", Text, nullable=True),
)
# The primary key (endpoint, seq) is the queue's index; this one serves pruning.
Index("ix_event_deliveries_seq", event_deliveries.c.seq)

event_endpoints = Table(
    "event_endpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", TS, nullable=True),
    Column("failures", Integer, nullable=False),
    Column("paused_until", TS, nullable=True),
    Column("last_success", TS, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", TS, nullable=True),
    Column("delivered", BigInteger, nullable=False),
)
