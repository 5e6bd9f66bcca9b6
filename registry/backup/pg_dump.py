"""PostgreSQL's own tools: ``pg_dump`` (a consistent snapshot while the registry writes)
and ``pg_restore``, found on ``PATH`` (Debian: postgresql-client), the password passed in
the environment, never on the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from registry.backup.store import Location


class ToolFailed(Exception):
    """``pg_dump`` or ``pg_restore`` is missing or failed."""


def _tool(name: str, bindir: str | None) -> str:
    found = shutil.which(name, path=bindir) if bindir else shutil.which(name)
    if found is None:
        where = bindir or "PATH"
        raise ToolFailed(f"{name} not found on {where} (install postgresql-client)")
    return found


def _run(command: list[str], location: Location) -> None:
    env = dict(os.environ)
    if location.password is not None:
        env["PGPASSWORD"] = location.password
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolFailed(f"{Path(command[0]).name} failed: {done.stderr.strip()[-2000:]}")


def dump(location: Location, target: Path, bindir: str | None = None) -> None:
    """``pg_dump --format=custom`` of the database into the new file ``target``."""
    command = [_tool("pg_dump", bindir), "--format=custom", "--no-owner", "--no-privileges"]
    _run([*command, f"--file={target}", location.libpq_url], location)


def restore(location: Location, source: Path, bindir: str | None = None) -> None:
    """``pg_restore`` of ``source`` into the (empty) database, in one transaction: all of
    it or, on any error, nothing."""
    command = [
        _tool("pg_restore", bindir),
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={location.libpq_url}",
        str(source),
    ]
    _run(command, location)
