"""SQLite's online backup: a consistent copy of a database other processes keep writing
(the copy is of one moment; writers are not held up in WAL mode)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


def online_copy(source: Path, target: Path) -> None:
    """Copy the database ``source`` to the new file ``target`` with SQLite's backup API,
    in one step (one read transaction: one moment of the source), then fsync it."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # pages=-1: all at once, from one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        finally:
            dst.close()
    finally:
        src.close()
    fsync(target)


def check(path: Path) -> str | None:
    """``PRAGMA integrity_check`` and the schema revision: the revision, or raises
    ``ValueError`` saying what is wrong."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()
        if result is None or result[0] != "ok":
            raise ValueError(f"{path}: integrity check failed: {result}")
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            return None
        return None if row is None else str(row[0])
    finally:
        conn.close()


def put_in_place(copy: Path, target: Path) -> None:
    """Make ``copy`` the database at ``target``: written beside it, fsynced, renamed over
    it (a crash leaves the old database or the new one), stale WAL files removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(target.name + ".restoring")
    with copy.open("rb") as src, staged.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            target.with_name(target.name + suffix).unlink()
    staged.replace(target)
    fsync(target.parent)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
