"""Quotas under concurrent pushes into one project: one SQLite registry with two
workers, and two PostgreSQL nodes on one database (requests of each client alternate
between them). Every push is a real push over HTTP (blobs, then the manifest), eight at
once. Usage never exceeds the quota (the documented bound is 0 bytes); every accepted
image pulls whole; every refused push leaves its image invisible; after deletes and GC,
usage equals a recount and exactly what the remaining images hold."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.gc import pull, run_gc
from tests.support.oci import OCI_MANIFEST, digest_of, image_manifest
from tests.support.postgres import PostgresCluster
from tests.support.quotas import KiB, layer_bytes, make_project, recount, set_quota, usage
from tests.support.server import WharfServer

IMAGES = 16
CLIENTS = 8
LAYER = 120 * KiB
BASE = 60 * KiB  # a base layer every image shares: counted once


@dataclass
class Image:
    tag: str
    blobs: list[bytes]  # base, own layer, config
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def own(self) -> int:
        """What it adds to a project that holds the base layer already."""
        return sum(len(b) for b in self.blobs[1:]) + len(self.manifest)


def make_images(project: str) -> list[Image]:
    base = layer_bytes(f"{project}-base", BASE)
    images = []
    for i in range(IMAGES):
        layer = layer_bytes(f"{project}-{i}", LAYER)
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
        manifest = json.dumps(image_manifest(config, [base, layer])).encode()
        images.append(Image(f"v{i}", [base, layer, config], manifest))
    return images


def push(clients: list[httpx.Client], repo: str, image: Image) -> str:
    """Push ``image``, each request to the next client (node); "accepted", or "refused"
    at the first 403 DENIED (a quota error naming the project). Anything else fails."""
    turn = 0

    def client() -> httpx.Client:
        nonlocal turn
        turn += 1
        return clients[turn % len(clients)]

    for blob in image.blobs:
        r = client().post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
        )
        if r.status_code == 403:
            return _refused(r, repo)
        assert r.status_code == 201, (r.status_code, r.text)
    r = client().put(
        f"/v2/{repo}/manifests/{image.tag}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    if r.status_code == 403:
        return _refused(r, repo)
    assert r.status_code == 201, (r.status_code, r.text)
    return "accepted"


def _refused(r: httpx.Response, repo: str) -> str:
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED", error
    assert error["detail"]["project"] == repo.split("/")[0], error
    assert error["detail"]["usage"] + error["detail"]["adding"] > error["detail"]["quota"]
    return "refused"


def push_together(clients: list[httpx.Client], repo: str, images: list[Image]) -> list[str]:
    barrier = threading.Barrier(CLIENTS, timeout=60)

    def go(chunk: list[Image]) -> list[str]:
        barrier.wait()
        return [push(clients, repo, image) for image in chunk]

    chunks = [images[i::CLIENTS] for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = dict(zip([id(c) for c in chunks], pool.map(go, chunks), strict=True))
    outcome: dict[str, str] = {}
    for chunk in chunks:
        for image, result in zip(chunk, results[id(chunk)], strict=True):
            outcome[image.tag] = result
    return [outcome[image.tag] for image in images]


def check_quota_under_concurrent_pushes(
    servers: list[WharfServer], config: Path, new_project: Callable[[str], None]
) -> None:
    project = f"c{uuid.uuid4().hex[:10]}"
    new_project(project)
    images = make_images(project)
    quota = BASE + int(6.5 * images[0].own)
    repo = f"{project}/app"
    clients = [s.client() for s in servers]
    try:
        set_quota(clients[0], project, quota)
        outcome = push_together(clients, repo, images)
        accepted = [i for i, o in zip(images, outcome, strict=True) if o == "accepted"]
        refused = [i for i, o in zip(images, outcome, strict=True) if o == "refused"]
        for c in clients:  # every node reports the same usage
            found = usage(c, project)
            assert found["bytes"] <= quota, (found, quota)  # the bound: 0 bytes over
        assert accepted and refused, outcome
        for c in clients:
            found = usage(c, project)
            # refused only when the next blob did not fit: less than a layer was left
            assert quota - found["bytes"] < LAYER + 1024, (found, quota)
        tags = clients[-1].get(f"/v2/{repo}/tags/list").json()["tags"]
        assert sorted(tags) == sorted(i.tag for i in accepted)
        for n, image in enumerate(accepted):
            pull(clients[n % len(clients)], repo, image.tag)
        for n, image in enumerate(refused):
            c = clients[n % len(clients)]
            assert c.get(f"/v2/{repo}/manifests/{image.tag}").status_code == 404
            assert c.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404
        assert "0 project(s) corrected" in recount(servers[0])
        # delete half of the accepted images; GC takes them and the refused pushes' links
        deleted, kept = accepted[::2], accepted[1::2]
        for image in deleted:
            r = clients[0].delete(f"/v2/{repo}/manifests/{image.digest}")
            assert r.status_code == 202, r.text
        run_gc(config, "--grace", "0s")
        expected = (BASE if kept else 0) + sum(i.own for i in kept)
        for c in clients:
            assert usage(c, project)["bytes"] == expected
        assert "0 project(s) corrected" in recount(servers[0])
        for image in kept:
            pull(clients[-1], repo, image.tag)
    finally:
        for c in clients:
            c.close()


def test_sqlite_two_workers(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "server", {"http": {"workers": 2}}).start()
    try:
        check_quota_under_concurrent_pushes(
            [server], server.config_path, lambda p: make_project(server, p)
        )
    finally:
        server.stop()


@pytest.fixture
def nodes(postgres: PostgresCluster, tmp_path: Path) -> Iterator[list[WharfServer]]:
    """Two nodes on one new PostgreSQL database and one storage root."""
    url = postgres.create_database(f"quota_{uuid.uuid4().hex[:12]}")
    config = {
        "http": {"workers": 1},
        "database": {"url": url},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "shared-storage")}},
    }
    servers = [WharfServer(tmp_path / n, copy.deepcopy(config)) for n in ("node-a", "node-b")]
    try:
        servers[0].start()
        servers[1].start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_postgres_two_nodes(nodes: list[WharfServer]) -> None:
    check_quota_under_concurrent_pushes(
        nodes, nodes[0].config_path, lambda p: make_project(nodes[0], p)
    )
