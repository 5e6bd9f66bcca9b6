"""Several registry processes acting as one registry.

Two ``wharf serve`` nodes (one worker each) share one PostgreSQL database and one storage
root, as nodes behind a load balancer do; requests of one client go to either node. And
one SQLite registry with two workers takes concurrent pushes just as consistently.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    OCI_MANIFEST,
    blob_file,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    unique_name,
    upload_ids,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer

MiB = 1024 * 1024


@dataclass
class Nodes:
    a: WharfServer
    b: WharfServer
    root: Path
    cluster: PostgresCluster
    database: str

    def sql(self, query: str) -> str:
        return self.cluster.psql(query, self.database)

    def count(self, query: str) -> int:
        return int(self.sql(query))


@pytest.fixture(scope="module")
def nodes(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """Two nodes on one new PostgreSQL database and one storage root, started at once."""
    database = f"nodes_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(database)
    workdir = tmp_path_factory.mktemp("nodes")
    root = workdir / "shared-storage"
    config = {
        "http": {"workers": 1},
        "database": {"url": url},
        "storage": {"filesystem": {"rootdirectory": str(root)}},
    }
    servers = [WharfServer(workdir / n, copy.deepcopy(config)) for n in ("node-a", "node-b")]
    try:
        # Both find an empty database: the schema must be created once, not twice.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(WharfServer.start, servers))
        yield Nodes(servers[0], servers[1], root, postgres, database)
    finally:
        for server in servers:
            server.stop()


def run_together(jobs: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``jobs`` in threads released at the same moment; their responses, in order."""
    barrier = threading.Barrier(len(jobs), timeout=30)

    def go(job: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(go, jobs))


def manifest_body(layer: bytes, n: int) -> tuple[bytes, bytes]:
    """(config, manifest bytes) of a small image whose config carries ``n``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
    return config, json.dumps(image_manifest(config, [layer])).encode()


def test_upload_begun_on_one_node_finishes_on_the_other(nodes: Nodes) -> None:
    name, data = unique_name("nodes"), os.urandom(3 * MiB)
    digest = digest_of(data)
    with nodes.a.client() as ca, nodes.b.client() as cb:
        location = start_upload(ca, name)
        offset = 0
        for client in (ca, cb, ca):  # one MiB on each hop, alternating nodes
            chunk = data[offset : offset + MiB]
            r = client.patch(
                location,
                content=chunk,
                headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
            )
            assert r.status_code == 202, r.text
            offset += len(chunk)
            location = r.headers["location"]
            status = (cb if client is ca else ca).get(location)
            assert status.status_code == 204
            assert status.headers["range"] == f"0-{offset - 1}"
        r = cb.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text
        for client in (ca, cb):
            got = client.get(f"/v2/{name}/blobs/{digest}")
            assert got.status_code == 200 and got.content == data
    assert not upload_ids(nodes.root)


def test_what_one_node_writes_the_other_serves_at_once(nodes: Nodes) -> None:
    name = unique_name("nodes")
    with nodes.a.client() as ca, nodes.b.client() as cb:
        digest, body = push_image(ca, name, "v1", [b"layer pushed through node a"])
        for ref in ("v1", digest):
            r = cb.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.content == body
            assert r.headers["docker-content-digest"] == digest
        assert cb.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]
        assert name in cb.get("/v2/_catalog").json()["repositories"]

        # B moves the tag; A resolves it to the new manifest at once.
        digest2, body2 = push_image(cb, name, "v1", [b"layer pushed through node b"])
        assert ca.get(f"/v2/{name}/manifests/v1").content == body2

        # A referrer pushed through B is listed by A.
        artifact = image_manifest(
            b"{}", [], subject={"mediaType": OCI_MANIFEST, "digest": digest2, "size": len(body2)}
        )
        push_blob(cb, name, b"{}")
        assert put_manifest(cb, name, "sig", artifact, OCI_MANIFEST).status_code == 201
        index = ca.get(f"/v2/{name}/referrers/{digest2}").json()
        assert [m["digest"] for m in index["manifests"]] == [
            digest_of(json.dumps(artifact).encode())
        ]

        # A deletes; B no longer serves the manifest nor its tag (no stale cache).
        assert ca.delete(f"/v2/{name}/manifests/{digest2}").status_code == 202
        assert cb.get(f"/v2/{name}/manifests/{digest2}").status_code == 404
        assert cb.get(f"/v2/{name}/manifests/v1").status_code == 404
        assert cb.get(f"/v2/{name}/manifests/{digest}").status_code == 200


def test_same_blob_pushed_through_both_nodes_at_once(nodes: Nodes) -> None:
    name, other = unique_name("same"), unique_name("same")
    data = os.urandom(2 * MiB)
    digest, half = digest_of(data), len(data) // 2

    def push(server: WharfServer, repository: str) -> Callable[[], httpx.Response]:
        client = server.client()
        location = start_upload(client, repository)
        r = client.patch(location, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
        assert r.status_code == 202
        location = r.headers["location"]

        def finish() -> httpx.Response:
            try:
                return client.put(
                    location,
                    params={"digest": digest},
                    content=data[half:],
                    headers={"Content-Range": f"{half}-{len(data) - 1}"},
                )
            finally:
                client.close()

        return finish

    jobs = [push(server, repo) for server in (nodes.a, nodes.b) for repo in (name, name, other)]
    results = run_together(jobs)
    assert [r.status_code for r in results] == [201] * len(jobs), [r.text for r in results]

    stored = blob_file(nodes.root, digest)
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == ["data"]  # once, nothing left beside
    assert not upload_ids(nodes.root)
    assert nodes.count(f"SELECT count(*) FROM blobs WHERE digest = '{digest}'") == 1
    assert nodes.count(f"SELECT count(*) FROM repository_blobs WHERE digest = '{digest}'") == 2
    for server in (nodes.a, nodes.b):
        with server.client() as c:
            for repo in (name, other):
                assert c.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_concurrent_tag_updates_and_manifest_pushes(nodes: Nodes) -> None:
    name, layer = unique_name("tags"), b"shared layer"
    with nodes.a.client() as ca:
        push_blob(ca, name, layer)
        bodies = []
        for n in range(6):
            config, body = manifest_body(layer, n)
            push_blob(ca, name, config)
            bodies.append(body)
    digests = {digest_of(body) for body in bodies}

    def put(server: WharfServer, ref: str, body: bytes) -> Callable[[], httpx.Response]:
        def job() -> httpx.Response:
            with server.client() as c:
                return put_manifest(c, name, ref, body, OCI_MANIFEST)

        return job

    servers = (nodes.a, nodes.b)
    for _round in range(3):
        # every manifest is new in the first round: the same manifest from both nodes
        jobs = [put(servers[i % 2], "latest", bodies[i // 2]) for i in range(12)]
        results = run_together(jobs)
        assert [r.status_code for r in results] == [201] * 12, [r.text for r in results]

    repo = f"(SELECT id FROM repositories WHERE name = '{name}')"
    assert nodes.count(f"SELECT count(*) FROM tags WHERE repository_id = {repo}") == 1
    assert nodes.count(f"SELECT count(*) FROM manifests WHERE repository_id = {repo}") == 6
    assert nodes.count(f"SELECT count(*) FROM repositories WHERE name = '{name}'") == 1
    seen = set()
    for server in servers:
        with server.client() as c:
            r = c.get(f"/v2/{name}/manifests/latest")
            assert r.status_code == 200
            seen.add(r.headers["docker-content-digest"])
            assert c.get(f"/v2/{name}/tags/list").json()["tags"] == ["latest"]
    assert len(seen) == 1 and seen <= digests


def test_concurrent_deletes_and_pushes_of_one_manifest(nodes: Nodes) -> None:
    name = unique_name("del")
    with nodes.a.client() as ca:
        digest, body = push_image(ca, name, "t", [b"layer to delete"])

    def delete(server: WharfServer) -> Callable[[], httpx.Response]:
        def job() -> httpx.Response:
            with server.client() as c:
                return c.delete(f"/v2/{name}/manifests/{digest}")

        return job

    def put(server: WharfServer) -> Callable[[], httpx.Response]:
        def job() -> httpx.Response:
            with server.client() as c:
                return put_manifest(c, name, "t", body, OCI_MANIFEST)

        return job

    # Deletes of one manifest from both nodes: exactly one wins.
    codes = sorted(r.status_code for r in run_together([delete(nodes.a), delete(nodes.b)] * 3))
    assert codes == [202, 404, 404, 404, 404, 404]

    # Pushes and deletes of one manifest at once: no error, and a consistent end.
    for _round in range(3):
        jobs = [put(nodes.a), delete(nodes.b), put(nodes.b), delete(nodes.a)]
        results = run_together(jobs)
        assert {r.status_code for r in results[0::2]} == {201}, [r.text for r in results]
        assert {r.status_code for r in results[1::2]} <= {202, 404}
        with nodes.b.client() as cb:
            by_tag = cb.get(f"/v2/{name}/manifests/t").status_code
            by_digest = cb.get(f"/v2/{name}/manifests/{digest}").status_code
        assert by_digest in (200, 404)
        assert by_tag == 404 or by_digest == 200  # never a tag without its manifest
    dangling = (
        "SELECT count(*) FROM manifest_blobs mb"
        " LEFT JOIN manifests m ON m.id = mb.manifest_id WHERE m.id IS NULL"
    )
    assert nodes.count(dangling) == 0


def test_sqlite_workers_take_concurrent_pushes_consistently(
    make_wharf: Callable[..., WharfServer],
) -> None:
    server = make_wharf({"http": {"workers": 2}})
    name, layer = unique_name("workers"), os.urandom(MiB)
    digest = digest_of(layer)

    def push(n: int) -> Callable[[], httpx.Response]:
        config, body = manifest_body(layer, n % 4)

        def job() -> httpx.Response:
            with server.client() as c:
                for blob in (layer, config):
                    push_blob(c, name, blob)
                return put_manifest(c, name, "latest", body, OCI_MANIFEST)

        return job

    results = run_together([push(n) for n in range(12)])
    assert [r.status_code for r in results] == [201] * 12, [r.text for r in results]
    with server.client() as c:
        assert c.get(f"/v2/{name}/tags/list").json()["tags"] == ["latest"]
        assert c.get(f"/v2/{name}/blobs/{digest}").content == layer
    with sqlite3.connect(server.root / "wharf.db") as db:
        rows: dict[str, Any] = {
            "blob": db.execute("SELECT count(*) FROM blobs WHERE digest = ?", (digest,)),
            "repository": db.execute("SELECT count(*) FROM repositories WHERE name = ?", (name,)),
            "manifests": db.execute("SELECT count(*) FROM manifests"),
            "tags": db.execute("SELECT count(*) FROM tags"),
        }
        counts = {key: cursor.fetchone()[0] for key, cursor in rows.items()}
    assert counts == {"blob": 1, "repository": 1, "manifests": 4, "tags": 1}
    assert not upload_ids(server.root)
