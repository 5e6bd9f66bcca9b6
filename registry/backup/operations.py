"""Taking a backup of the metadata and restoring one, and checking that the storage holds
what a restored database refers to."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from registry.backup import pg_dump, sqlite_copy
from registry.backup.manifest import FORMAT, BackupManifest, sha256
from registry.backup.store import Location, has_schema, locate, referenced_digests
from registry.config import Settings
from registry.drivers import make_driver
from registry.meta.db import Database
from registry.meta.migrate import current_revision, head_revision, known_revision
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest

FILES = {"sqlite": "metadata.sqlite3", "postgresql": "metadata.pgdump"}
STAT_CONCURRENCY = 16


class BackupRefused(Exception):
    """A backup or restore that cannot be done as asked; nothing was changed."""


def storage_of(settings: Settings) -> dict[str, str]:
    """The storage a backup goes with, as the operator will look for it."""
    s3 = settings.storage.s3
    if s3 is not None:
        return {"driver": "s3", "bucket": s3.bucket, "rootdirectory": s3.rootdirectory}
    fs = settings.storage.filesystem
    root = str(Path(fs.rootdirectory).resolve()) if fs is not None else ""
    return {"driver": settings.storage.driver, "rootdirectory": root}


async def _digests(url: str) -> list[tuple[str, int]]:
    db = Database(url, 1)
    try:
        return await db.run_read(referenced_digests)
    finally:
        await db.close()


async def take_backup(
    settings: Settings, directory: Path, bindir: str | None = None
) -> BackupManifest:
    """A consistent copy of the metadata into the new or empty ``directory``, while the
    registry serves; ``backup.json`` is written last."""
    try:
        location = locate(settings.database_url)
    except ValueError as e:
        raise BackupRefused(str(e)) from None
    _new_directory(directory)
    dump = directory / FILES[location.kind]
    if location.kind == "sqlite":
        assert location.path is not None
        await asyncio.to_thread(sqlite_copy.online_copy, location.path, dump)
        revision = await asyncio.to_thread(sqlite_copy.check, dump)
        counted = await _digests(f"sqlite+aiosqlite:///{dump}")
    else:
        revision = await current_revision(settings.database_url)
        try:
            await asyncio.to_thread(pg_dump.dump, location, dump, bindir)
        except pg_dump.ToolFailed as e:
            raise BackupRefused(str(e)) from None
        counted = await _digests(settings.database_url)  # about the dump's moment
    made = BackupManifest(
        format=FORMAT,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        database=location.kind,
        file=dump.name,
        sha256=await asyncio.to_thread(sha256, dump),
        size=_size(dump),
        schema_revision=revision,
        storage=storage_of(settings),
        blobs=len(counted),
    )
    made.write(directory)
    return made


def _size(path: Path) -> int:
    """The size of the file at ``path`` (0 if there is none)."""
    return os.path.getsize(path) if os.path.isfile(path) else 0


def _new_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise BackupRefused(f"{directory} is not empty: give a new directory")
    directory.mkdir(parents=True, exist_ok=True)


@dataclass(slots=True)
class Restored:
    manifest: BackupManifest
    upgrade_needed: bool
    checked: int = 0
    missing: list[str] = field(default_factory=list)


async def restore_backup(
    settings: Settings,
    directory: Path,
    force: bool = False,
    check_storage: bool = True,
    bindir: str | None = None,
) -> Restored:
    """Bring the metadata of ``directory`` back into the configured database (with the
    registry stopped), then check that the storage holds every object it refers to."""
    try:
        made = BackupManifest.read(directory)
        location = locate(settings.database_url)
    except ValueError as e:
        raise BackupRefused(str(e)) from None
    if made.database != location.kind:
        raise BackupRefused(
            f"the backup is of a {made.database} database; database.url names a "
            f"{location.kind} one: restore into the same kind"
        )
    if made.schema_revision is not None and not known_revision(made.schema_revision):
        raise BackupRefused(
            f"the backup's schema revision {made.schema_revision} is newer than this "
            f"Wharf's ({head_revision()}): restore it with the Wharf that took it"
        )
    dump = directory / made.file
    if location.kind == "sqlite":
        await _restore_sqlite(location, dump, force)
    else:
        await _restore_postgres(settings.database_url, location, dump, bindir)
    restored = Restored(made, made.schema_revision != head_revision())
    if check_storage:
        await _check_storage(settings, restored)
    return restored


async def _restore_sqlite(location: Location, dump: Path, force: bool) -> None:
    assert location.path is not None
    target = location.path
    if _size(target) > 0 and not force:
        raise BackupRefused(
            f"{target} exists: stop the registry and pass --force to replace it, "
            "or configure a new database"
        )
    await asyncio.to_thread(sqlite_copy.put_in_place, dump, target)


async def _restore_postgres(url: str, location: Location, dump: Path, bindir: str | None) -> None:
    db = Database(url, 1)
    try:
        occupied = await db.run_read(has_schema)
    finally:
        await db.close()
    if occupied:
        raise BackupRefused(
            "the configured PostgreSQL database is not empty: restore into a new one "
            "(createdb) and point database.url at it"
        )
    try:
        await asyncio.to_thread(pg_dump.restore, location, dump, bindir)
    except pg_dump.ToolFailed as e:
        raise BackupRefused(str(e)) from None


async def _check_storage(settings: Settings, restored: Restored) -> None:
    """Stat every object the restored metadata refers to (a few at a time)."""
    store = BlobStore(make_driver(settings))
    digests = await _digests(settings.database_url)
    gate = asyncio.Semaphore(STAT_CONCURRENCY)

    async def stat(digest: str) -> None:
        async with gate:
            try:
                await store.stat(Digest.parse(digest))
            except BlobNotFound:
                restored.missing.append(digest)

    await asyncio.gather(*(stat(d) for d, _ in digests))
    restored.checked = len(digests)
    restored.missing.sort()
