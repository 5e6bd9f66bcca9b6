"""``wharf backup DIR`` and ``wharf restore DIR``: the metadata, and what to do for the
storage (docs/backup.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from registry.backup.operations import BackupRefused, Restored, restore_backup, take_backup
from registry.commandline import add_config_arguments, settings_or_exit

SHOWN_MISSING = 20


def _storage_advice(storage: dict[str, str]) -> str:
    if storage.get("driver") == "s3":
        where = f"s3://{storage['bucket']}/{storage.get('rootdirectory', '').strip('/')}"
        copy = f"rclone sync (or aws s3 sync) {where} to your backup bucket"
    else:
        copy = f"rsync -a {storage.get('rootdirectory', '')}/ to your backup location"
    return (
        "Now copy the storage: " + copy + ".\n"
        "  Copy it after this metadata backup: stored objects never change once written, so\n"
        "  the copy holds everything this backup refers to, and objects pushed meanwhile are\n"
        "  harmless extras (GC collects them after a restore). Keep GC from deleting until\n"
        "  the copy is done (no `wharf gc`, gc.schedule off), or what a delete made garbage\n"
        "  meanwhile may be gone from the copy."
    )


def _backup(args: argparse.Namespace) -> int:
    settings = settings_or_exit(args.config)
    try:
        made = asyncio.run(take_backup(settings, Path(args.directory), args.pg_bindir))
    except BackupRefused as e:
        print(f"wharf: backup refused: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"directory": args.directory, **asdict(made)}))
    else:
        print(
            f"backed up the {made.database} metadata to {Path(args.directory) / made.file} "
            f"({made.size} bytes, schema {made.schema_revision}, {made.blobs} stored objects "
            "referred to)"
        )
        print(_storage_advice(made.storage))
    return 0


def _report(restored: Restored, directory: str) -> None:
    made = restored.manifest
    print(f"restored the {made.database} metadata of {directory} (taken {made.created_at})")
    if restored.upgrade_needed:
        print(f"  its schema is at revision {made.schema_revision}: run `wharf db upgrade` next")
    if restored.checked:
        print(f"  storage: {restored.checked - len(restored.missing)} of {restored.checked} "
              "objects it refers to are there")  # fmt: skip
    for digest in restored.missing[:SHOWN_MISSING]:
        print(f"  missing from storage: {digest}")
    if len(restored.missing) > SHOWN_MISSING:
        print(f"  ... and {len(restored.missing) - SHOWN_MISSING} more")


def _restore(args: argparse.Namespace) -> int:
    settings = settings_or_exit(args.config)
    try:
        restored = asyncio.run(
            restore_backup(
                settings, Path(args.directory), args.force, not args.no_check, args.pg_bindir
            )
        )
    except BackupRefused as e:
        print(f"wharf: restore refused: {e}", file=sys.stderr)
        return 2
    _report(restored, args.directory)
    if restored.missing:
        print(
            "wharf: the storage lacks objects the metadata refers to: copy the storage that "
            "goes with this backup, or their pulls will fail (BLOB_UNKNOWN)",
            file=sys.stderr,
        )
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``backup`` and ``restore``."""
    backup = sub.add_parser(
        "backup", help="a consistent copy of the metadata while the registry serves"
    )
    backup.add_argument("directory", help="a new (or empty) directory for the backup")
    backup.add_argument("--json", action="store_true", help="print the backup's manifest")
    restore = sub.add_parser("restore", help="bring a backup's metadata back (registry stopped)")
    restore.add_argument("directory", help="a directory `wharf backup` wrote")
    restore.add_argument("--force", action="store_true", help="replace an existing SQLite database")
    restore.add_argument(
        "--no-check", action="store_true", help="do not stat the objects in storage afterwards"
    )
    for command in (backup, restore):
        command.add_argument(
            "--pg-bindir", default=None, help="where pg_dump and pg_restore are (default: PATH)"
        )
        add_config_arguments(command, positional=False)
    backup.set_defaults(func=_backup)
    restore.set_defaults(func=_restore)
