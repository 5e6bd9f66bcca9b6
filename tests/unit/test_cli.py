"""The ``wharf`` command: help, config check, database migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from registry.meta.migrate import head_revision


def wharf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_help_lists_commands() -> None:
    out = wharf("--help")
    assert out.returncode == 0
    for command in ("serve", "db", "config"):
        assert command in out.stdout


def test_config_prints_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("http:\n  addr: 127.0.0.1:5999\n")
    out = wharf("config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert '"addr": "127.0.0.1:5999"' in out.stdout


def test_bad_config_fails_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("log: {level: loud}\n")
    out = wharf("serve", str(cfg))
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr


def test_db_upgrade_and_out_of_date_schema(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    assert wharf("db", "current", "-c", str(cfg)).returncode == 1
    up = wharf("db", "upgrade", "-c", str(cfg))
    assert up.returncode == 0, up.stderr
    current = wharf("db", "current", "-c", str(cfg))
    head = head_revision()
    assert current.returncode == 0 and f"database revision: {head}" in current.stdout
    with sqlite3.connect(tmp_path / "data" / "wharf.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0000'")
    out = wharf("serve", str(cfg))
    assert out.returncode == 2
    assert "wharf db upgrade" in out.stderr


def test_config_output_hides_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "storage:\n  filesystem:\n    rootdirectory: /tmp/x\n"
        "notifications:\n  endpoints:\n    - name: hook\n      url: http://127.0.0.1:1/\n"
        "      headers: {Authorization: [Bearer s3cr3t-header]}\n"
        "replication:\n  rules:\n    - name: r\n      direction: push\n"
        "      remote: {url: 'http://127.0.0.1:2', username: u, password: s3cr3t-pass}\n"
    )
    out = wharf("config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "s3cr3t" not in out.stdout
    assert "***" in out.stdout and "127.0.0.1:2" in out.stdout
