"""Helpers for the quota tests: project rows, small OCI layouts for skopeo, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection

from tests.support.server import WharfServer

ROOT = Path(__file__).resolve().parents[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
KiB = 1024


def database_url(server: WharfServer) -> str:
    url = server.config.get("database", {}).get("url")
    return str(url) if url else f"sqlite+aiosqlite:///{server.root / 'wharf.db'}"


def add_project(conn: Connection, name: str, quota: int | None = None) -> None:
    """Project ``name`` (private, no members), with ``quota`` if given: through the
    projects' and the quotas' own SQL, each raising the revision the servers watch."""
    from registry.projects import store as project_store
    from registry.quotas import store as quota_store

    project_store.create_project(conn, name, False, "", None, "tests")
    if quota is not None:
        assert quota_store.set_quota(conn, name, quota)


def make_project(server: WharfServer, name: str, quota: int | None = None) -> None:
    """:func:`add_project` in the server's database."""
    from registry.meta.db import Database

    async def write() -> None:
        db = Database(database_url(server), 1)
        try:
            await db.run_write(add_project, name, quota)
        finally:
            await db.close()

    asyncio.run(write())


def wharf_cli(server: WharfServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``wharf ARGS -c CONFIG`` against the server's database."""
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args, "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
    )


def recount(server: WharfServer) -> str:
    """``wharf quota recount``: its output (the projects it had to correct)."""
    out = wharf_cli(server, "quota", "recount")
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout


@dataclass(frozen=True)
class Built:
    """An image in an OCI layout: its manifest digest and what it holds, by digest."""

    tag: str
    digest: str
    sizes: dict[str, int]  # manifest, config and layers

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


def layer_bytes(seed: str, size: int) -> bytes:
    """``size`` pseudo-random bytes, different for every seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class OciLayout:
    """An OCI image layout directory, images added by tag, for ``skopeo copy oci:``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.refs: list[dict[str, Any]] = []

    def put(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def image(self, tag: str, layers: list[bytes]) -> Built:
        descs = [self.put(layer, OCI_LAYER) for layer in layers]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
            }
        ).encode()
        cdesc = self.put(config, OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cdesc,
            "layers": descs,
        }
        mdesc = self.put(json.dumps(manifest).encode(), OCI_MANIFEST)
        self.refs.append({**mdesc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        self._write_index()
        sizes = {d["digest"]: d["size"] for d in [mdesc, cdesc, *descs]}
        return Built(tag, mdesc["digest"], sizes)

    def _write_index(self) -> None:
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_text(json.dumps(index))

    def ref(self, tag: str) -> str:
        return f"oci:{self.root}:{tag}"


def usage(client: httpx.Client, project: str) -> dict[str, Any]:
    r = client.get(f"/api/projects/{project}/usage")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def set_quota(client: httpx.Client, project: str, quota: int | None) -> None:
    r = client.put(f"/api/projects/{project}/quota", json={"bytes": quota})
    assert r.status_code == 200, r.text
    assert r.json()["quota"] == quota
