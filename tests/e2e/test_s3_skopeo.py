"""skopeo against two Wharf nodes on S3 (Ceph radosgw) and PostgreSQL: push through one
node, pull through the other. Node A redirects blob GETs to presigned S3 URLs (skopeo
follows them to radosgw); node B streams the bytes itself."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.clients import Skopeo
from tests.support.images import ImageSet, blob_path, file_digest, read_blob, read_index
from tests.support.postgres import PostgresCluster
from tests.support.s3 import RadosGateway, only_s3, wharf_s3_config
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN_PUSH = "--dest-tls-verify=false"
PLAIN_PULL = "--src-tls-verify=false"


@pytest.fixture(scope="module")
def s3pair(
    s3: RadosGateway, postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WharfServer, WharfServer]]:
    root = f"e2e-{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(f"s3e2e_{uuid.uuid4().hex[:12]}")
    workdir = tmp_path_factory.mktemp("s3e2e")
    config = wharf_s3_config(s3, root, url)
    a = only_s3(WharfServer(workdir / "a", copy.deepcopy(config)))
    b = only_s3(WharfServer(workdir / "b", wharf_s3_config(s3, root, url, redirect=False)))
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(WharfServer.start, (a, b)))
        yield a, b
    finally:
        a.stop()
        b.stop()


def _check_layout(back: Path, digest: str, layers: list[str], sizes: list[int]) -> None:
    desc = read_index(back)["pulled"]
    assert desc["digest"] == digest
    manifest = json.loads(read_blob(back, digest))
    assert [layer["digest"] for layer in manifest["layers"]] == layers
    for layer, size in zip(layers, sizes, strict=True):
        path = blob_path(back, layer)
        assert path.stat().st_size == size
        assert file_digest(path) == layer


@pytest.mark.slow
def test_multilayer_push_on_one_node_pull_from_both(
    s3pair: tuple[WharfServer, WharfServer], skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    a, b = s3pair
    src = images["multilayer"]
    skopeo.copy(images.ref("multilayer"), f"docker://{b.host}/e2e/s3:v1", PLAIN_PUSH)
    info = skopeo.inspect(f"docker://{a.host}/e2e/s3:v1", "--tls-verify=false")
    assert info["Digest"] == src.digest and info["Layers"] == list(src.layers)
    for node, name in ((a, "via-redirect"), (b, "streamed")):
        back = tmp_path / name
        skopeo.copy(f"docker://{node.host}/e2e/s3:v1", f"oci:{back}:pulled", PLAIN_PULL)
        _check_layout(back, src.digest, list(src.layers), list(src.layer_sizes))


def test_multi_arch_index_across_nodes(
    s3pair: tuple[WharfServer, WharfServer], skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    a, b = s3pair
    src = images["multi"]
    skopeo.copy(images.ref("multi"), f"docker://{a.host}/e2e/s3multi:v1", "--all", PLAIN_PUSH)
    back = tmp_path / "back"
    skopeo.copy(f"docker://{b.host}/e2e/s3multi:v1", f"oci:{back}:pulled", "--all", PLAIN_PULL)
    assert read_index(back)["pulled"]["digest"] == src.digest
    for arch in ("amd64", "arm64"):
        child = src.child(arch)
        manifest = json.loads(read_blob(back, child.digest))
        assert [layer["digest"] for layer in manifest["layers"]] == list(child.layers)
        for digest in child.layers:
            assert file_digest(blob_path(back, digest)) == digest
