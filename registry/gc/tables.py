"""Tables of the garbage collector (issue #7): runs, the lease, pins and doomed blobs.

Times are epoch seconds (``Float``): compared with plain numbers on both databases.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text

from registry.meta.tables import metadata

# One row per run (CLI, API or schedule): what it was asked, where it is, what it did.
gc_runs = Table(
    "gc_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=False),
    # running, done, failed, interrupted (a run whose process died; found by the next one)
    Column("state", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),  # cli, api, schedule
    Column("holder", String(200), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("options", Text, nullable=False),  # JSON
    Column("progress", Text, nullable=False),  # JSON: phase, done, total
    Column("result", Text, nullable=True),  # JSON: counts, bytes, durations
    Column("error", Text, nullable=True),
    Index("ix_gc_runs_state", "state"),
)

# The single lease: one run at a time across all processes and nodes.
gc_lease = Table(
    "gc_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("run_id", Integer, nullable=True),
    Column("expires_at", Float, nullable=False),
)

# Pins: the last time a push-side operation relied on a digest (upload commit, mount,
# link, blob HEAD/GET, a manifest referencing it). GC spares what was pinned within its
# grace period.
gc_seen = Table(
    "gc_seen",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("seen_at", Float, nullable=False),
)

# Blobs whose rows GC deleted and whose file it is deleting: rows before files, so a
# crash leaves these for the next run; pushes of such a digest wait until it is gone.
gc_doomed = Table(
    "gc_doomed",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("doomed_at", Float, nullable=False),
)
