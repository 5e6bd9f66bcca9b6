"""Parsing and checking manifests: what a manifest references, and what it is."""

from __future__ import annotations

import json
import math
import re
from array import array
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from registry.content import mediatypes as mt
from registry.errors import ManifestInvalid
from storage.digest import Digest, InvalidDigest

MAX_DEPTH = 256  # nesting of arrays and objects a manifest may have (real ones: under 10)
MAX_SIZE = 2**63 - 1  # a size the database holds (a signed 64-bit integer)
MAX_TYPE = 255  # characters of a media type (RFC 6838: 127 for each of type and subtype)

# What the depth scan skips: a string (to its end, unterminated or not: linear time on any
# input) or a run of characters that are neither quotes nor brackets.
_SKIP = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^"\[\]{}]+', re.DOTALL)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 in, -1 out (signed bytes)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # an escaped UTF-16 surrogate (half of a pair?)


class JSONTooDeep(ValueError):
    """JSON nested deeper than the limit :func:`load_json` was given."""


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, brackets inside strings
    not counted; without recursion and in linear time, whatever ``text`` is."""
    steps = array("b", _SKIP.sub("", text).encode("ascii").translate(_STEPS))
    return max(accumulate(steps, initial=0))


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:50]} is out of range")
    return value


def _check_text(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as e:
        bad = e.object[e.start : e.end]
        raise ValueError(f"a string holds a lone surrogate {bad!r}, which is not text") from None


def load_json(data: bytes | str, max_depth: int = MAX_DEPTH, *, strict: bool = True) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (:class:`JSONTooDeep`,
    a ``ValueError``) before parsing, so the interpreter's recursion limit is never hit.

    ``strict``: refuse what RFC 8259 does not allow but Python's parser takes (``NaN``,
    ``Infinity``, numbers too large for a float, strings that are not Unicode text: lone
    surrogates, which no database takes). Else bytes that are not text are replaced.
    Every failure is a ``ValueError``."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode(json.detect_encoding(data), "strict" if strict else "replace")
    elif strict:
        _check_text(data)
    opened = data.count("[") + data.count("{")  # cheap: most documents end the check here
    depth = json_depth(data) if opened > max_depth else opened
    if depth > max_depth:
        raise JSONTooDeep(f"nested {depth} levels deep, over the limit of {max_depth}")
    try:
        if not strict:
            return json.loads(data)
        doc = json.loads(data, parse_constant=_constant, parse_float=_finite)
        if _SURROGATE.search(data):  # rare: then check that every string is text
            _check_text(json.dumps(doc, ensure_ascii=False))
        return doc
    except RecursionError:  # not reached at the default limits; a backstop
        raise JSONTooDeep(f"nested too deeply (limit {max_depth})") from None


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
    if len(media_type) > MAX_TYPE:
        raise ManifestInvalid(f"{where}: mediaType is longer than {MAX_TYPE} characters")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise ManifestInvalid(f"{where}: size must be a non-negative integer below 2^63")
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
    if isinstance(artifact_type, str) and len(artifact_type) > MAX_TYPE:
        raise ManifestInvalid(f"{where}: artifactType is longer than {MAX_TYPE} characters")
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
        doc = load_json(body)
    except JSONTooDeep as e:
        raise ManifestInvalid(f"manifest is {e}") from None
    except ValueError as e:  # UnicodeDecodeError is one
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
    if artifact_type is not None and len(artifact_type) > MAX_TYPE:
        raise ManifestInvalid(f"artifactType is longer than {MAX_TYPE} characters")
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
