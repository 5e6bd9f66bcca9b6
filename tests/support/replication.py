"""Helpers for the replication and mirror tests: quick images through the HTTP API,
comparing two registries, and the reference registry with htpasswd auth."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
)

ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def random_bytes(seed: int | str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _push_manifest(client: httpx.Client, repo: str, ref: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": doc["mediaType"]}
    )
    assert r.status_code == 201, r.text
    return digest_of(body)


def put_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """POST an upload, then PUT the whole blob with ``?digest=`` (the reference registry
    has no single-POST upload)."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    digest = digest_of(data)
    location = httpx.URL(r.headers["location"]).copy_merge_params({"digest": digest})
    r = client.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_layers(
    client: httpx.Client, repo: str, ref: str | None, layers: list[bytes], arch: str = "amd64"
) -> str:
    """A multi-layer OCI image (tagged ``ref``, or by digest); returns its digest."""
    config = json.dumps({"architecture": arch, "os": "linux", "n": len(layers)}).encode()
    for blob in [config, *layers]:
        put_blob(client, repo, blob)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)} for x in layers
        ],
    }
    return _push_manifest(client, repo, ref or digest_of(json.dumps(doc).encode()), doc)


def push_multiarch(client: httpx.Client, repo: str, tag: str, seed: str, base: bytes) -> str:
    """An OCI index with linux/amd64 and linux/arm64 children; returns the index digest."""
    children = []
    for arch in ("amd64", "arm64"):
        layers = [base, random_bytes(f"{seed}-{arch}", 24 * 1024)]
        digest = push_layers(client, repo, None, layers, arch)
        body = client.get(
            f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        ).content
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(body),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    return _push_manifest(
        client, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    )


def tag_digests(client: httpx.Client, repo: str) -> dict[str, str]:
    """Every tag of ``repo`` and the digest it resolves to ({} if there is no repo).

    A tag deleted (by replication, say) between the listing and its HEAD makes it list
    again; a listed tag that stays unresolvable fails."""
    for attempt in range(3):
        r = client.get(f"/v2/{repo}/tags/list")
        if r.status_code == 404:
            return {}
        assert r.status_code == 200, r.text
        out = {}
        for tag in r.json().get("tags") or []:
            h = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            if h.status_code == 404 and attempt < 2:
                break
            assert h.status_code == 200, (repo, tag, h.status_code)
            out[tag] = h.headers["docker-content-digest"]
        else:
            return out
    raise AssertionError("unreachable")


def assert_complete(client: httpx.Client, repo: str, ref: str) -> None:
    """The manifest at ``ref`` and everything it references can be pulled, byte-exact."""
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, (repo, ref, r.text)
    assert digest_of(r.content) == r.headers["docker-content-digest"]
    doc = r.json()
    for child in doc.get("manifests") or []:
        assert_complete(client, repo, child["digest"])
    for blob in [doc.get("config"), *(doc.get("layers") or [])]:
        if blob:
            b = client.get(f"/v2/{repo}/blobs/{blob['digest']}")
            assert b.status_code == 200, (repo, blob["digest"], b.status_code)
            assert digest_of(b.content) == blob["digest"]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def replicate_cli(config: Path, rule: str) -> subprocess.CompletedProcess[str]:
    """``wharf replicate RULE -c CONFIG`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", "replicate", rule, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def replicate(config: Path, rule: str) -> subprocess.CompletedProcess[str]:
    """What ``wharf replicate RULE -c CONFIG`` does, in this process (a new interpreter
    per run costs seconds on a loaded machine); stderr is captured."""
    from replicator.cli import _replicate

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = asyncio.run(_replicate(str(config), rule, True))
    return subprocess.CompletedProcess(["wharf", "replicate", rule], code, "", err.getvalue())


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
