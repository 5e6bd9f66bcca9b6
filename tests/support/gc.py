"""Helpers for the garbage collection tests: run ``wharf gc``, pull and check images."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.oci import OCI_INDEX, OCI_MANIFEST

ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
ROOT = Path(__file__).resolve().parents[2]


def run_gc(config: Path, *args: str, timeout: float = 300) -> dict[str, Any]:
    """``wharf gc -c config --json -q ARGS``; its result."""
    out = subprocess.run(
        [sys.executable, "-m", "registry.cli", "gc", "-c", str(config), "--json", "-q", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pull(client: httpx.Client, repo: str, ref: str) -> list[str]:
    """Pull an image or index by tag or digest, checking every digest; returns the digests
    of everything it pulled. Raises AssertionError on anything missing or wrong."""
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, (repo, ref, r.status_code, r.text)
    digest = sha256(r.content)
    assert r.headers["docker-content-digest"] == digest, (repo, ref)
    if ref.startswith("sha256:"):
        assert digest == ref, (repo, ref, digest)
    pulled = [digest]
    manifest = json.loads(r.content)
    for child in manifest.get("manifests", []):
        pulled += pull(client, repo, child["digest"])
    blobs = [manifest["config"]] if "config" in manifest else []
    blobs += manifest.get("layers", [])
    for desc in blobs:
        b = client.get(f"/v2/{repo}/blobs/{desc['digest']}")
        assert b.status_code == 200, (repo, ref, desc["digest"], b.status_code)
        assert sha256(b.content) == desc["digest"], (repo, ref, desc["digest"])
        assert len(b.content) == desc["size"]
        pulled.append(desc["digest"])
    return pulled


def stored_files(root: Path) -> dict[str, int]:
    """Every blob file under the filesystem storage ``root``: digest -> size."""
    found: dict[str, int] = {}
    for path in (root / "blobs").rglob("data"):
        algorithm = path.parent.parent.parent.name
        found[f"{algorithm}:{path.parent.name}"] = path.stat().st_size
    return found
