"""Tables of the scrub (issue #18): its runs and its lease. The quarantine itself is the
core's ``blob_quarantine`` (registry/meta/tables.py): whether bytes are good is content
state every lookup reads; the scrub only decides what goes in.

Times are epoch seconds (``Float``), as GC's.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from registry.meta.tables import metadata

# One row per run (CLI, API or schedule). ``cursor``: the last digest checked, in digest
# order: a resumed run goes on after it.
scrub_runs = Table(
    "scrub_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=False),
    # running, done, stopped (asked to stop: resumable), failed, interrupted (its
    # process died: found by the next run; resumable)
    Column("state", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),  # cli, api, schedule
    Column("holder", String(200), nullable=False),
    Column("rate", BigInteger, nullable=False),  # bytes per second, 0: unlimited
    Column("cursor", String(150), nullable=False, server_default=""),
    Column("checked", Integer, nullable=False, server_default="0"),
    Column("checked_bytes", BigInteger, nullable=False, server_default="0"),
    Column("bad", Integer, nullable=False, server_default="0"),
    Column("total", Integer, nullable=True),  # digests to check when the run started
    Column("error", Text, nullable=True),
    Index("ix_scrub_runs_state", "state"),
)

# The single lease: one run at a time across all processes and nodes.
scrub_lease = Table(
    "scrub_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("run_id", Integer, nullable=True),
    Column("expires_at", Float, nullable=False),
)
