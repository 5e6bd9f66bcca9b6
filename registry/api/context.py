"""What handlers are given: the services, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

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
