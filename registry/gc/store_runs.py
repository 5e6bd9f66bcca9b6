"""SQL of GC runs (issue #7): one row per run, what it was asked, where it is, what it did."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from registry.gc.tables import gc_runs


def start_run(
    conn: Connection, holder: str, trigger: str, dry_run: bool, options: dict[str, Any], now: float
) -> int:
    """Record a new run (and close runs left 'running' by dead processes)."""
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.state == "running")
        .values(state="interrupted", finished_at=now)
    )
    run_id: int = conn.execute(
        insert(gc_runs)
        .values(
            started_at=now,
            heartbeat_at=now,
            state="running",
            trigger=trigger,
            holder=holder,
            dry_run=dry_run,
            options=json.dumps(options),
            progress=json.dumps({"phase": "starting"}),
        )
        .returning(gc_runs.c.id)
    ).scalar_one()
    return run_id


def progress_run(conn: Connection, run_id: int, progress: dict[str, Any], now: float) -> None:
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.id == run_id)
        .values(progress=json.dumps(progress), heartbeat_at=now)
    )


def finish_run(
    conn: Connection,
    run_id: int,
    state: str,
    result: dict[str, Any],
    error: str | None,
    now: float,
) -> None:
    conn.execute(
        update(gc_runs)
        .where(gc_runs.c.id == run_id)
        .values(
            state=state,
            finished_at=now,
            heartbeat_at=now,
            result=json.dumps(result),
            error=error,
            progress=json.dumps({"phase": state}),
        )
    )


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "trigger": row.trigger,
        "holder": row.holder,
        "dry_run": bool(row.dry_run),
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "heartbeat_at": row.heartbeat_at,
        "options": json.loads(row.options),
        "progress": json.loads(row.progress),
        "result": json.loads(row.result) if row.result else None,
        "error": row.error,
    }


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(gc_runs).where(gc_runs.c.id == run_id)).first()
    return _run_dict(row) if row is not None else None


def list_runs(conn: Connection, limit: int, before: int | None) -> list[dict[str, Any]]:
    query = select(gc_runs).order_by(gc_runs.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(gc_runs.c.id < before)
    return [_run_dict(r) for r in conn.execute(query)]


def last_finished(conn: Connection) -> float | None:
    """When the last run that did not fail ended (for the schedule)."""
    value = conn.execute(
        select(func.max(gc_runs.c.started_at)).where(gc_runs.c.trigger == "schedule")
    ).scalar()
    return float(value) if value is not None else None
