"""Parsing and checking manifests: what a manifest references, and what it is."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry.content import mediatypes as mt
from registry.errors import ManifestInvalid
from storage.digest import Digest, InvalidDigest


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (``mediaType``, ``digest``, ``size`` and optional fields)."""

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None


@dataclass(slots=True)
class ParsedManifest:
    """What the registry needs to know of a manifest to store and index it."""

    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    config: Descriptor | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestInvalid(f"{where}: descriptor must be an object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}: mediaType missing")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: size must be a non-negative integer")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: digest missing")
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as e:
        raise ManifestInvalid(f"{where}: {e}") from None
    urls = raw.get("urls") or ()
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        urls = ()
    artifact_type = raw.get("artifactType")
    platform = raw.get("platform")
    return Descriptor(
        media_type,
        parsed,
        size,
        artifact_type if isinstance(artifact_type, str) else None,
        tuple(urls),
        platform if isinstance(platform, dict) else None,
    )


def _descriptors(raw: Any, where: str, *, required: bool) -> list[Descriptor]:
    if raw is None and not required:
        return []
    if not isinstance(raw, list):
        raise ManifestInvalid(f"{where} must be an array")
    return [_descriptor(item, f"{where}[{i}]") for i, item in enumerate(raw)]


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    ctype = (content_type or "").split(";")[0].strip() or None
    if declared and ctype and declared != ctype and ctype not in ("application/json",):
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {ctype!r}")
    media_type = declared or ctype
    if media_type in (None, "application/json"):
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise ManifestInvalid("Docker schema 1 manifests are not supported")
    if media_type not in mt.MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type[:200]!r}")
    return media_type


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and check a manifest; raise :class:`ManifestInvalid` with the reason.

    The size limit (``validation.manifestmaxsize``) is the caller's to enforce."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestInvalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    media_type = _media_type(doc, content_type)
    if media_type != mt.OCI_ARTIFACT_LEGACY and doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestInvalid("annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType must be a string")
    parsed = ParsedManifest(media_type, annotations=annotations, artifact_type=artifact_type)
    if "subject" in doc and doc["subject"] is not None:
        parsed.subject = _descriptor(doc["subject"], "subject")
    if media_type in mt.INDEXES:
        parsed.manifests = _descriptors(doc.get("manifests"), "manifests", required=True)
        for child in parsed.manifests:
            if child.media_type not in mt.MANIFEST_TYPES:
                # An index may point at any content; only manifests must be present here.
                parsed.manifests = [
                    d for d in parsed.manifests if d.media_type in mt.MANIFEST_TYPES
                ]
                break
    elif media_type == mt.OCI_ARTIFACT_LEGACY:
        parsed.blobs = _descriptors(doc.get("blobs"), "blobs", required=False)
    else:
        parsed.config = _descriptor(doc.get("config"), "config")
        layers = _descriptors(
            doc.get("layers"), "layers", required=media_type == mt.DOCKER_MANIFEST
        )
        parsed.blobs = [parsed.config] + [
            d for d in layers if not (d.media_type in mt.FOREIGN_LAYERS and d.urls)
        ]
        if parsed.artifact_type is None:
            # The referrers API reports config.mediaType for manifests without artifactType.
            parsed.artifact_type = parsed.config.media_type
    return parsed
