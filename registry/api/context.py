"""What handlers are given: the services, built once by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from registry.config import Settings
from registry.meta.store import MetadataStore
from registry.service.blobs import BlobService
from registry.service.manifests import ManifestService
from registry.service.uploads import UploadService


@dataclass(frozen=True, slots=True)
class Services:
    """The registry's use cases, shared by all requests."""

    settings: Settings
    meta: MetadataStore
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    # (kind "manifest"|"blob", repository, digest, media type, size, tag, manifest bytes):
    # told of each GET, must not block or raise (pull events, issue #5)
    pull_listeners: list[Callable[[str, str, str, str, int, str | None, bytes | None], None]] = (
        field(default_factory=list)
    )
