"""docker, podman and skopeo against two Wharf nodes on S3 (Ceph radosgw) and one
PostgreSQL database, behind a round-robin TCP proxy: each new client connection goes to
the other node, so one push or pull is served by both. Node A redirects blob GETs to
presigned S3 URLs, node B streams them."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.s3 import S3Driver
from tests.support.clients import Dockerd, Podman, Skopeo
from tests.support.images import ImageSet, build_images
from tests.support.postgres import PostgresCluster
from tests.support.roundrobin import RoundRobinProxy
from tests.support.s3 import RadosGateway, only_s3, s3_options, wharf_s3_config
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


@dataclass
class Cluster:
    a: WharfServer
    b: WharfServer
    proxy: RoundRobinProxy
    gateway: RadosGateway
    root: str

    def s3_blobs(self) -> set[str]:
        """The digests of the blobs stored in the bucket under the nodes' prefix."""
        d = S3Driver(s3_options(self.gateway, self.root))
        try:
            pages = d._client.get_paginator("list_objects_v2").paginate(
                Bucket=d.bucket, Prefix=d.key("blobs") + "/"
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        finally:
            d.close()
        return {
            "sha256:" + m.group(1) for k in keys if (m := re.search(r"/([0-9a-f]{64})/data$", k))
        }

    def served_by_both(self) -> None:
        """Both nodes got connections since the last reset, and no node wrote locally."""
        assert min(self.proxy.connections) > 0, self.proxy.connections
        for node in (self.a, self.b):
            assert not node.root.exists(), f"{node.root} written: storage is S3 only"

    def manifest(self, node: WharfServer, repo: str, ref: str) -> dict[str, Any]:
        with node.client() as c:
            r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture(scope="module")
def cluster(
    s3: RadosGateway, postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = f"clients-{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(f"s3clients_{uuid.uuid4().hex[:12]}")
    workdir = tmp_path_factory.mktemp("s3clients")
    config = wharf_s3_config(s3, root, url)
    a = only_s3(WharfServer(workdir / "a", copy.deepcopy(config)))
    b = only_s3(WharfServer(workdir / "b", wharf_s3_config(s3, root, url, redirect=False)))
    proxy: RoundRobinProxy | None = None
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(WharfServer.start, (a, b)))
        proxy = RoundRobinProxy(a.port, b.port)
        yield Cluster(a, b, proxy, s3, root)
    finally:
        if proxy is not None:
            proxy.close()
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """The test images with a 12 MiB big layer (several 5 MiB S3 parts), not 105 MiB."""
    return build_images(tmp_path_factory.mktemp("s3images") / "oci", big_mib=12)


def _docker_inspect(dockerd: Dockerd, ref: str) -> dict[str, Any]:
    data = json.loads(dockerd("image", "inspect", ref).stdout)
    assert len(data) == 1
    result: dict[str, Any] = data[0]
    return result


def test_docker_push_pull_through_both_nodes(
    cluster: Cluster, dockerd: Dockerd, skopeo: Skopeo, layout: ImageSet, tmp_path: Path
) -> None:
    ref = f"{cluster.proxy.host}/e2e/rr-docker:v1"
    archive = tmp_path / "multilayer.tar"
    skopeo.copy(layout.ref("multilayer"), f"docker-archive:{archive}:wharf-rr/multilayer:v1")
    dockerd("load", "-i", str(archive))
    loaded = _docker_inspect(dockerd, "wharf-rr/multilayer:v1")
    assert len(loaded["RootFS"]["Layers"]) == 3

    dockerd("tag", "wharf-rr/multilayer:v1", ref)
    cluster.proxy.reset()
    push = dockerd("push", ref).stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", push)
    assert m, push
    digest = m.group(1)
    cluster.served_by_both()
    # both nodes serve what docker pushed; every blob is in the bucket
    manifest = cluster.manifest(cluster.a, "e2e/rr-docker", digest)
    assert manifest == cluster.manifest(cluster.b, "e2e/rr-docker", "v1")
    assert manifest["config"]["digest"] == loaded["Id"]
    blobs = {d["digest"] for d in [manifest["config"], *manifest["layers"]]}
    assert len(blobs) == 4 and blobs <= cluster.s3_blobs()

    dockerd("rmi", ref, "wharf-rr/multilayer:v1")
    assert dockerd("image", "inspect", loaded["Id"], check=False).returncode != 0
    cluster.proxy.reset()
    pull = dockerd("pull", ref).stdout
    assert f"Digest: {digest}" in pull, pull
    cluster.served_by_both()
    pulled = _docker_inspect(dockerd, ref)
    assert pulled["Id"] == loaded["Id"]
    assert pulled["RootFS"]["Layers"] == loaded["RootFS"]["Layers"]
    dockerd("rmi", ref)


def test_podman_push_pull_through_both_nodes(
    cluster: Cluster, podman: Podman, layout: ImageSet, tmp_path: Path
) -> None:
    src = layout["multilayer"]
    ref = f"{cluster.proxy.host}/e2e/rr-podman:v1"
    podman("pull", f"oci:{layout.layout}:multilayer")
    image_id = src.config_digest.split(":", 1)[1]
    podman("tag", image_id, ref)
    digestfile = tmp_path / "digest"
    cluster.proxy.reset()
    podman("push", "--tls-verify=false", "--digestfile", str(digestfile), ref)
    digest = digestfile.read_text().strip()
    cluster.served_by_both()
    manifest = cluster.manifest(cluster.b, "e2e/rr-podman", digest)
    assert manifest["config"]["digest"] == src.config_digest
    assert len(manifest["layers"]) == 3
    assert {d["digest"] for d in manifest["layers"]} <= cluster.s3_blobs()

    podman("rmi", "-f", image_id)
    assert podman("image", "exists", ref, check=False).returncode != 0
    cluster.proxy.reset()
    podman("pull", "--tls-verify=false", ref)
    cluster.served_by_both()
    back = podman.image_inspect(ref)
    assert back["Digest"] == digest and back["Id"] == image_id
    podman("rmi", ref)


def test_skopeo_index_through_proxy_inspected_on_each_node(
    cluster: Cluster, skopeo: Skopeo, layout: ImageSet
) -> None:
    multi = layout["multi"]
    ref = f"{cluster.proxy.host}/e2e/rr-multi:v1"
    cluster.proxy.reset()
    skopeo.copy(layout.ref("multi"), f"docker://{ref}", "--all", "--dest-tls-verify=false")
    cluster.served_by_both()
    stored = cluster.s3_blobs()
    for node in (cluster.a, cluster.b):
        base = f"docker://{node.host}/e2e/rr-multi"
        raw = skopeo.inspect_raw(f"{base}:v1", "--tls-verify=false")
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == multi.digest
        for arch in ("amd64", "arm64"):
            child = multi.child(arch)
            info = skopeo.inspect(
                f"{base}:v1", "--tls-verify=false", global_flags=("--override-arch", arch)
            )
            assert info["Architecture"] == arch and info["Layers"] == list(child.layers)
            by_digest = skopeo.inspect_raw(f"{base}@{child.digest}", "--tls-verify=false")
            assert "sha256:" + hashlib.sha256(by_digest).hexdigest() == child.digest
            assert {child.config_digest, *child.layers} <= stored
