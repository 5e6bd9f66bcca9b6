"""podman pulls from wharf, pushes to another repository, and pulls that back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Podman, Skopeo
from tests.support.images import ImageSet
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def test_podman_pull_tag_push_pull(
    wharf: WharfServer,
    podman: Podman,
    skopeo: Skopeo,
    images: ImageSet,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    small = images["small"]
    src = f"{wharf.host}/e2e/podman-src:v1"
    dst = f"{wharf.host}/e2e/podman-dst:v2"
    skopeo.copy(images.ref("small"), f"docker://{src}", "--dest-tls-verify=false")

    podman("pull", "--tls-verify=false", src)
    pulled = podman.image_inspect(src)
    assert pulled["Digest"] == small.digest
    assert pulled["Id"] == small.config_digest.split(":", 1)[1]
    assert pulled["Architecture"] == "amd64"

    podman("tag", src, dst)
    digestfile = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digestfile), dst)
    pushed_digest = digestfile.read_text().strip()
    assert pushed_digest.startswith("sha256:")

    # the registry API serves the manifest and every blob it names, with matching digests
    r = client.get("/v2/e2e/podman-dst/manifests/v2", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert r.headers["docker-content-digest"] == pushed_digest
    assert f"sha256:{hashlib.sha256(r.content).hexdigest()}" == pushed_digest
    manifest = r.json()
    assert manifest["config"]["digest"] == small.config_digest
    assert len(manifest["layers"]) == len(small.layers)
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = client.get(f"/v2/e2e/podman-dst/blobs/{desc['digest']}")
        assert blob.status_code == 200, (desc, blob.text)
        assert len(blob.content) == desc["size"]
        assert f"sha256:{hashlib.sha256(blob.content).hexdigest()}" == desc["digest"]
    tags = client.get("/v2/e2e/podman-dst/tags/list").json()
    assert tags["tags"] == ["v2"]

    # drop both names locally and pull the pushed copy back
    podman("rmi", src, dst)
    assert podman("image", "exists", dst, check=False).returncode != 0
    podman("pull", "--tls-verify=false", dst)
    back = podman.image_inspect(dst)
    assert back["Digest"] == pushed_digest
    assert back["Id"] == pulled["Id"]
    assert f"{wharf.host}/e2e/podman-dst@{pushed_digest}" in back["RepoDigests"]
    podman("rmi", dst)


def test_podman_pulls_one_platform_of_index(
    wharf: WharfServer, podman: Podman, skopeo: Skopeo, images: ImageSet
) -> None:
    multi = images["multi"]
    ref = f"{wharf.host}/e2e/podman-multi:v1"
    skopeo.copy(images.ref("multi"), f"docker://{ref}", "--all", "--dest-tls-verify=false")
    podman("pull", "--tls-verify=false", "--arch", "arm64", ref)
    info = podman.image_inspect(ref)
    assert info["Architecture"] == "arm64"
    assert info["Id"] == multi.child("arm64").config_digest.split(":", 1)[1]
    podman("rmi", ref)
