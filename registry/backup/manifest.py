"""``backup.json``: what a backup directory holds, written last (a directory without it
is an unfinished backup)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

MANIFEST = "backup.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class BackupManifest:
    format: int
    created_at: str  # RFC 3339, UTC
    database: str  # "sqlite" or "postgresql"
    file: str  # the dump's name in the directory
    sha256: str
    size: int
    schema_revision: str | None
    storage: dict[str, str]  # the storage it goes with: driver and where
    blobs: int  # digests the metadata refers to at the moment of the copy

    def write(self, directory: Path) -> None:
        staged = directory / (MANIFEST + ".tmp")
        staged.write_text(json.dumps(asdict(self), indent=1) + "\n")
        staged.replace(directory / MANIFEST)

    @classmethod
    def read(cls, directory: Path) -> BackupManifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise ValueError(f"{directory}: no {MANIFEST}: not a finished backup")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            found = data.get("format")
            raise ValueError(f"{path}: backup format {found}, this Wharf reads {FORMAT}")
        made = cls(**data)
        dump = directory / made.file
        if not dump.is_file() or dump.stat().st_size != made.size or sha256(dump) != made.sha256:
            raise ValueError(f"{dump}: missing or not the file the backup wrote (size, sha256)")
        return made


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
