"""Tiny helpers to push content with plain HTTP in API tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    """Monolithic push (POST ?digest=); returns the digest."""
    digest = digest_of(data)
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> dict[str, Any]:
    """An OCI image manifest for the given config and layer bytes."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    manifest.update(extra)
    return manifest


def push_image(
    client: httpx.Client, name: str, ref: str, layers: list[bytes], config: bytes | None = None
) -> tuple[str, bytes]:
    """Push blobs and a manifest; returns (manifest digest, manifest bytes)."""
    config = (
        config or json.dumps({"architecture": "amd64", "os": "linux", "n": len(layers)}).encode()
    )
    for blob in [config, *layers]:
        push_blob(client, name, blob)
    body = json.dumps(image_manifest(config, layers)).encode()
    r = client.put(
        f"/v2/{name}/manifests/{ref}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return digest_of(body), body
