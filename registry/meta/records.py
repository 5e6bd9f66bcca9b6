"""Plain records the metadata store returns (no SQLAlchemy types leak out)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """A manifest as stored for one repository."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: str | None = None


@dataclass(frozen=True, slots=True)
class NewManifest:
    """Everything :meth:`MetadataStore.put_manifest` writes for one manifest."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    subject: str | None
    annotations: str | None
    blobs: tuple[tuple[str, int], ...]
    children: tuple[str, ...]
    # (media type, digest, size) of what it references, in its order: for events
    references: tuple[tuple[str, str, int], ...] = ()
