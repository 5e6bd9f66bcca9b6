"""Facts about a manifest worth searching for, read once when it is pushed.

For an image manifest: the config blob (at most :data:`MAX_CONFIG` bytes, only when it is
an image config) gives the platform, labels, creation time, entrypoint, command,
environment; the manifest gives its annotations and layers. For an index: the platforms
its descriptors name, and the children's digests (the index hook adds the children's
stored platforms and labels). The result is the ``details`` of the push's
:class:`~registry.meta.changes.Change`; :mod:`registry.search.store_index` stores it.

Facts are best effort: nothing read here ever refuses a push. A config blob that is not
JSON, not an object, nested too deeply, too large or with fields of the wrong types gives
the facts that can be read from it (often none), and a line in the log at debug level.
"""

from __future__ import annotations

import logging
from typing import Any

from registry.content.manifests import MAX_SIZE, ParsedManifest, load_json
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest

log = logging.getLogger("wharf.search")

MAX_CONFIG = 1024 * 1024
IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
CONFIG_FIELDS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "StopSignal")
MAX_LIST = 200  # entries kept of Env, Cmd, ... (the page shows them; the index keeps them)


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(v)[:4096] for v in value[:MAX_LIST]]


def _text(value: Any) -> Any:
    """``value`` with lone surrogates (``"\\ud800"`` in JSON) in its strings replaced: the
    database takes only Unicode text."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode(errors="replace").decode()
        return value
    if isinstance(value, list):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


def config_facts(raw: bytes) -> dict[str, Any]:
    """What an image config says: platform, labels, created and the run settings; ``{}``
    for a config that is not a JSON object. Never raises."""
    try:
        doc = load_json(raw, strict=False)
    except ValueError as e:  # not JSON, or nested too deeply
        log.debug("config blob gives no facts: %s", e)
        return {}
    if not isinstance(doc, dict):
        log.debug("config blob gives no facts: a JSON %s, not an object", type(doc).__name__)
        return {}
    try:
        facts: dict[str, Any] = _text(_read_config(doc))
    except Exception:  # a backstop: facts must never stop a push
        log.info("config blob gives no facts", exc_info=True)
        return {}
    return facts


def _read_config(doc: dict[str, Any]) -> dict[str, Any]:
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    assert isinstance(cfg, dict)
    labels = cfg.get("Labels")
    labels = (
        {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}
        if isinstance(labels, dict)
        else {}
    )
    facts: dict[str, Any] = {"labels": labels}
    platform = {
        k: doc[k]
        for k in ("os", "architecture", "variant", "os.version")
        if isinstance(doc.get(k), str) and doc[k]
    }
    if platform:
        facts["platform"] = platform
    if isinstance(doc.get("created"), str):
        facts["created"] = doc["created"][:64]
    if isinstance(doc.get("author"), str):
        facts["author"] = doc["author"][:256]
    for key in CONFIG_FIELDS:
        value = cfg.get(key)
        if isinstance(value, list):
            facts[key] = _strings(value)
        elif isinstance(value, dict):
            facts[key] = sorted(str(k) for k in value)[:MAX_LIST]
        elif isinstance(value, str) and value:
            facts[key] = value[:4096]
    return facts


async def read_config(blobs: BlobStore, parsed: ParsedManifest) -> bytes | None:
    """The config blob of an image manifest, if it is a small image config."""
    config = parsed.config
    if config is None or config.media_type not in IMAGE_CONFIGS or config.size > MAX_CONFIG:
        return None
    try:
        data = await blobs.get(config.digest)
    except BlobNotFound:
        return None  # the push is refused anyway (MANIFEST_BLOB_UNKNOWN)
    if len(data) > MAX_CONFIG or Digest.of(data, config.digest.algorithm) != config.digest:
        return None
    return data


def manifest_details(parsed: ParsedManifest, config: bytes | None) -> dict[str, object]:
    """The ``details`` of a manifest push, for the search index."""
    details: dict[str, Any] = {"annotations": dict(parsed.annotations)}
    detail: dict[str, Any] = {}
    if parsed.is_index:
        details["children"] = [str(d.digest) for d in parsed.manifests]
        details["platforms"] = [d.platform for d in parsed.manifests if d.platform]
        detail["manifests"] = [
            {
                "digest": str(d.digest),
                "mediaType": d.media_type,
                "size": d.size,
                "platform": d.platform or {},
            }
            for d in parsed.manifests
        ]
    else:
        if parsed.config is not None:
            details["config_digest"] = str(parsed.config.digest)
            detail["config"] = {
                "digest": str(parsed.config.digest),
                "mediaType": parsed.config.media_type,
                "size": parsed.config.size,
            }
        layers = [d for d in parsed.blobs if d is not parsed.config]
        total = sum(d.size for d in parsed.blobs)
        if total <= MAX_SIZE:  # else no total: more than the database holds
            details["total_size"] = total
        detail["layers"] = [
            {"digest": str(d.digest), "mediaType": d.media_type, "size": d.size} for d in layers
        ]
        facts = config_facts(config) if config is not None else {}
        details["labels"] = facts.get("labels", {})
        if "platform" in facts:
            details["platforms"] = [facts["platform"]]
        detail["image"] = facts
    details["detail"] = detail
    return details


async def details_for(blobs: BlobStore, parsed: ParsedManifest) -> dict[str, object]:
    """Read what is needed (the config blob) and return the push's ``details``; never
    raises (without facts, a push still goes in; ``wharf search reindex`` reads them)."""
    try:
        config = await read_config(blobs, parsed)
    except Exception:  # storage trouble: the manifest's facts without the config's
        log.info("config blob of a push not read for search facts", exc_info=True)
        config = None
    try:
        return manifest_details(parsed, config)
    except Exception:  # a backstop: facts must never stop a push
        log.info("no search facts for a push", exc_info=True)
        return {}
