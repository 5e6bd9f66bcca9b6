"""Two registry nodes on S3 (a real Ceph radosgw) and one PostgreSQL database.

Node A answers blob GETs with a 307 to a presigned URL (``storage.redirect`` on, the
default); node B has redirects disabled and streams the bytes (ranges included) itself.
Requests of one client alternate between the nodes, chunked uploads included.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.s3 import S3Driver
from tests.support.oci import (
    OCI_MANIFEST,
    digest_of,
    push_blob,
    push_image,
    start_upload,
    unique_name,
)
from tests.support.postgres import PostgresCluster
from tests.support.s3 import RadosGateway, only_s3, s3_options, wharf_s3_config
from tests.support.server import WharfServer
from tests.support.tcpproxy import TCPProxy

MiB = 1024 * 1024


@dataclass
class S3Nodes:
    a: WharfServer
    b: WharfServer
    gateway: RadosGateway
    root: str
    config: dict[str, Any]

    def driver(self) -> S3Driver:
        """A driver on the nodes' bucket and prefix, to look at what they stored."""
        return S3Driver(s3_options(self.gateway, self.root))

    def keys(self, prefix: str) -> list[str]:
        d = self.driver()
        try:
            pages = d._client.get_paginator("list_objects_v2").paginate(
                Bucket=d.bucket, Prefix=d.key(prefix) + "/"
            )
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        finally:
            d.close()


@pytest.fixture(scope="module")
def s3nodes(
    s3: RadosGateway, postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Nodes]:
    root = f"nodes-{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(f"s3nodes_{uuid.uuid4().hex[:12]}")
    config = wharf_s3_config(s3, root, url)
    workdir = tmp_path_factory.mktemp("s3nodes")
    servers = [
        only_s3(WharfServer(workdir / "a", copy.deepcopy(config))),
        only_s3(WharfServer(workdir / "b", wharf_s3_config(s3, root, url, redirect=False))),
    ]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(WharfServer.start, servers))
        yield S3Nodes(servers[0], servers[1], s3, root, config)
    finally:
        for server in servers:
            server.stop()


def _patch(client: httpx.Client, location: str, chunk: bytes, offset: int) -> str:
    r = client.patch(
        location,
        content=chunk,
        headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
    )
    assert r.status_code == 202, r.text
    assert r.headers["range"] == f"0-{offset + len(chunk) - 1}"
    next_location: str = r.headers["location"]
    return next_location


def test_chunked_upload_alternating_nodes(s3nodes: S3Nodes) -> None:
    """Chunks smaller and larger than a part (5 MiB), begun on A, continued on B,
    finished on A; both nodes then serve the blob, B in ranges too."""
    name = unique_name("s3")
    data = os.urandom(17 * MiB + 321)
    digest = digest_of(data)
    sizes = [1 * MiB, 7 * MiB, 2 * MiB + 5, 6 * MiB]
    with s3nodes.a.client() as ca, s3nodes.b.client() as cb:
        location = start_upload(ca, name)
        offset = 0
        for i, size in enumerate(sizes):
            client = (cb, ca)[i % 2]
            location = _patch(client, location, data[offset : offset + size], offset)
            offset += size
            status = (ca, cb)[i % 2].get(location)
            assert status.status_code == 204 and status.headers["range"] == f"0-{offset - 1}"
        r = ca.put(location, params={"digest": digest}, content=data[offset:])
        assert r.status_code == 201, r.text

        head = cb.head(f"/v2/{name}/blobs/{digest}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        got = cb.get(f"/v2/{name}/blobs/{digest}")
        assert got.status_code == 200 and got.content == data
        part = cb.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=5242870-5242899"})
        assert part.status_code == 206 and part.content == data[5242870:5242900]
        assert part.headers["content-range"] == f"bytes 5242870-5242899/{len(data)}"

        redirect = ca.get(f"/v2/{name}/blobs/{digest}")
        assert redirect.status_code == 307
        url = redirect.headers["location"]
        assert url.startswith(s3nodes.gateway.endpoint) and "X-Amz-Signature=" in url
        assert httpx.get(url, timeout=30).content == data
        ranged = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
        assert ranged.status_code == 206 and ranged.content == data[100:200]
    assert s3nodes.keys("uploads") == [], "the upload left objects behind"


def test_push_on_one_node_pull_from_the_other(s3nodes: S3Nodes) -> None:
    name = unique_name("s3")
    layers = [os.urandom(2 * MiB), os.urandom(6 * MiB), b"tiny layer"]
    with s3nodes.a.client() as ca, s3nodes.b.client() as cb:
        digest, body = push_image(cb, name, "v1", layers)
        r = ca.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body
        assert r.headers["docker-content-digest"] == digest
        for layer in layers:
            d = digest_of(layer)
            assert cb.get(f"/v2/{name}/blobs/{d}").content == layer
            assert ca.get(f"/v2/{name}/blobs/{d}", follow_redirects=True).content == layer
        # the same blob pushed through both nodes at once is stored once, both succeed
        blob = os.urandom(6 * MiB)
        with ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda c: push_blob(c, name, blob), (ca, cb)))
        assert done == [digest_of(blob)] * 2
        assert cb.get(f"/v2/{name}/blobs/{digest_of(blob)}").content == blob


def test_presigned_url_tampered_or_expired_is_refused(s3nodes: S3Nodes) -> None:
    name = unique_name("s3")
    with s3nodes.a.client() as ca:
        digest = push_blob(ca, name, b"secret layer bytes")
        url = ca.get(f"/v2/{name}/blobs/{digest}").headers["location"]
        assert "X-Amz-Expires=300" in url
    sig = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = url[:sig] + ("0" if url[sig] != "0" else "1") + url[sig + 1 :]
    assert httpx.get(tampered, timeout=30).status_code == 403
    longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")
    assert httpx.get(longer, timeout=30).status_code == 403
    assert httpx.get(url, timeout=30).content == b"secret layer bytes"


def _assert_unavailable(r: httpx.Response) -> None:
    """503 with the spec's JSON error body (code UNAVAILABLE, as for the database)."""
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json"
    assert [e["code"] for e in r.json()["errors"]] == ["UNAVAILABLE"], r.text


@pytest.mark.expect_5xx(503)  # the object store is cut off: 503 UNAVAILABLE
def test_object_store_unreachable_mid_upload(s3nodes: S3Nodes, tmp_path: Path) -> None:
    """A node whose S3 traffic goes through a proxy that is cut mid-upload answers 5xx with
    an OCI error body; no blob becomes visible, on it or on the other nodes."""
    proxy = TCPProxy("127.0.0.1", s3nodes.gateway.port).start()
    node: WharfServer | None = None
    try:
        config = copy.deepcopy(s3nodes.config)
        config["storage"]["s3"]["regionendpoint"] = proxy.url
        node = only_s3(WharfServer(tmp_path / "cut", config)).start()
        name = unique_name("s3")
        data = os.urandom(12 * MiB)
        digest = digest_of(data)
        small = os.urandom(100_000)
        with node.client() as c, s3nodes.b.client() as cb:
            location = start_upload(c, name)
            location = _patch(c, location, data[: 3 * MiB], 0)
            proxy.cut()
            started = time.monotonic()
            r = c.patch(
                location,
                content=data[3 * MiB :],
                headers={"Content-Range": f"{3 * MiB}-{len(data) - 1}"},
            )
            _assert_unavailable(r)
            _assert_unavailable(c.put(location, params={"digest": digest}))
            _assert_unavailable(
                c.post(
                    f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(small)}, content=small
                )
            )
            assert time.monotonic() - started < 60
            for blob in (digest, digest_of(small)):
                assert cb.head(f"/v2/{name}/blobs/{blob}").status_code == 404
            proxy.restore()
            # back again: the upload goes on from what S3 holds, and completes
            status = c.get(location)
            assert status.status_code == 204, status.text
            offset = int(status.headers["range"].split("-")[1]) + 1
            r = c.put(
                location,
                params={"digest": digest},
                content=data[offset:],
                headers={"Content-Range": f"{offset}-{len(data) - 1}"},
            )
            assert r.status_code == 201, r.text
            assert cb.get(f"/v2/{name}/blobs/{digest}").content == data
    finally:
        proxy.cut()
        if node is not None:
            node.stop()
