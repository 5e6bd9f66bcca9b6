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


# --- Helpers for the API conformance tests (tests/api) ------------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_JSON = b"{}"

# The only codes a JSON error body may carry (distribution-spec v1.1, "Error Codes").
SPEC_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)


def unique_name(prefix: str = "t") -> str:
    """A repository name no other test uses."""
    import uuid

    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check an error response: status, JSON ``{"errors": [...]}`` shape, first code."""
    assert r.status_code == status, (r.status_code, r.text)
    if r.request.method == "HEAD":
        assert r.content == b""
        return {}
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    body = r.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and body["errors"], body
    for err in body["errors"]:
        assert isinstance(err, dict)
        assert set(err) <= {"code", "message", "detail"}, err
        assert err["code"] in SPEC_ERROR_CODES, err
        assert isinstance(err.get("message", ""), str)
    first: dict[str, Any] = body["errors"][0]
    assert first["code"] == code, body
    return first


def start_upload(client: httpx.Client, name: str) -> str:
    """POST an upload session; returns its Location."""
    r = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    location: str = r.headers["location"]
    return location


def put_manifest(
    client: httpx.Client, name: str, ref: str, manifest: dict[str, Any] | bytes, media_type: str
) -> httpx.Response:
    """PUT a manifest (a dict is serialised as JSON); returns the response unchecked."""
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return client.put(
        f"/v2/{name}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
    )


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """A content descriptor for ``data``."""
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def raw_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no normalisation, no quoting)."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def blob_file(root: Any, digest: str) -> Any:
    """Where the filesystem driver under ``root`` (a Path) keeps a blob's bytes."""
    algorithm, hexpart = digest.split(":", 1)
    return root / "blobs" / algorithm / hexpart[:2] / hexpart / "data"


def upload_ids(root: Any) -> set[str]:
    """Ids of the upload sessions in the filesystem storage under ``root`` (a Path)."""
    uploads = root / "uploads"
    return {p.name for p in uploads.iterdir()} if uploads.is_dir() else set()


def assert_serving(client: httpx.Client) -> None:
    """The registry still answers and still takes a push and a pull."""
    import uuid

    assert client.get("/v2/").status_code == 200
    data = f"still serving {uuid.uuid4()}".encode()
    name = unique_name("alive")
    digest = push_blob(client, name, data)
    r = client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
