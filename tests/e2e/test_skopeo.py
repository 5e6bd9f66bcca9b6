"""skopeo against wharf: a >100 MB image and a multi-arch index survive a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.clients import Skopeo
from tests.support.images import ImageSet, blob_path, file_digest, read_blob, read_index
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN_PUSH = "--dest-tls-verify=false"
PLAIN_PULL = "--src-tls-verify=false"


@pytest.mark.slow
def test_multilayer_round_trip(
    wharf: WharfServer, skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    src = images["multilayer"]
    assert max(src.layer_sizes) > 100_000_000, "the big layer must be over 100 MB"
    ref = f"docker://{wharf.host}/e2e/multilayer:v1"

    skopeo.copy(images.ref("multilayer"), ref, PLAIN_PUSH)

    info = skopeo.inspect(ref, "--tls-verify=false")
    assert info["Digest"] == src.digest
    assert info["Layers"] == list(src.layers)
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Labels"] == {"test.image": "multilayer"}
    assert skopeo.inspect_raw(ref, "--tls-verify=false") == read_blob(images.layout, src.digest)

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:pulled", PLAIN_PULL)

    desc = read_index(back)["pulled"]
    assert desc["digest"] == src.digest
    manifest = json.loads(read_blob(back, desc["digest"]))
    assert manifest["config"]["digest"] == src.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == list(src.layers)
    assert [layer["size"] for layer in manifest["layers"]] == list(src.layer_sizes)
    # the bytes really are what the digests say (skopeo verifies too; check independently)
    for digest, size in zip(src.layers, src.layer_sizes, strict=True):
        path = blob_path(back, digest)
        assert path.stat().st_size == size
        assert file_digest(path) == digest


def test_multi_arch_index_round_trip(
    wharf: WharfServer, skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    src = images["multi"]
    amd64, arm64 = src.child("amd64"), src.child("arm64")
    ref = f"docker://{wharf.host}/e2e/multi:v1"

    skopeo.copy(images.ref("multi"), ref, "--all", PLAIN_PUSH)

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:pulled", "--all", PLAIN_PULL)
    desc = read_index(back)["pulled"]
    assert desc["digest"] == src.digest
    index = json.loads(read_blob(back, src.digest))
    children = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert children == {"linux/amd64": amd64.digest, "linux/arm64": arm64.digest}
    for child in (amd64, arm64):
        manifest = json.loads(read_blob(back, child.digest))
        assert [layer["digest"] for layer in manifest["layers"]] == list(child.layers)
        for digest in child.layers:
            assert file_digest(blob_path(back, digest)) == digest

    raw = skopeo.inspect_raw(ref, "--tls-verify=false")
    assert raw == read_blob(images.layout, src.digest)

    for child, arch in ((arm64, "arm64"), (amd64, "amd64")):
        info = skopeo.inspect(
            ref,
            "--tls-verify=false",
            global_flags=("--override-arch", arch, "--override-os", "linux"),
        )
        assert info["Architecture"] == arch
        assert info["Layers"] == list(child.layers)  # the platform's own image
        assert info["Digest"] == src.digest  # skopeo reports the digest it resolved: the index

    # a child is reachable by digest on its own
    by_digest = f"docker://{wharf.host}/e2e/multi@{arm64.digest}"
    assert skopeo.inspect(by_digest, "--tls-verify=false")["Architecture"] == "arm64"


def test_list_tags_and_delete(wharf: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    repo = f"docker://{wharf.host}/e2e/tags"
    for tag in ("a", "b"):
        skopeo.copy(images.ref("small"), f"{repo}:{tag}", PLAIN_PUSH)
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", repo).stdout)
    assert sorted(tags["Tags"]) == ["a", "b"]

    skopeo("delete", "--tls-verify=false", f"{repo}:a")
    result = skopeo("inspect", "--tls-verify=false", f"{repo}:a", check=False)
    assert result.returncode != 0
    assert "manifest unknown" in result.stderr.lower() or "not found" in result.stderr.lower()
