"""The Docker engine pushes to and pulls from wharf (plain HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Dockerd, Skopeo
from tests.support.images import ImageSet
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _inspect(dockerd: Dockerd, ref: str) -> dict[str, Any]:
    data = json.loads(dockerd("image", "inspect", ref).stdout)
    assert len(data) == 1
    result: dict[str, Any] = data[0]
    return result


def test_docker_push_rmi_pull(
    wharf: WharfServer,
    dockerd: Dockerd,
    skopeo: Skopeo,
    images: ImageSet,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    repo = f"{wharf.host}/e2e/docker-small"
    ref = f"{repo}:v1"

    # docker load of a docker-archive written by skopeo from the OCI layout
    archive = tmp_path / "small.tar"
    skopeo.copy(images.ref("small"), f"docker-archive:{archive}:wharf-e2e/small:loaded")
    out = dockerd("load", "-i", str(archive)).stdout
    assert "wharf-e2e/small:loaded" in out
    loaded = _inspect(dockerd, "wharf-e2e/small:loaded")
    image_id = loaded["Id"]
    assert loaded["Architecture"] == "amd64"
    assert loaded["Config"]["Labels"] == {"test.image": "small"}

    dockerd("tag", "wharf-e2e/small:loaded", ref)
    push = dockerd("push", ref).stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", push)
    assert m, push
    pushed_digest, pushed_size = m.group(1), int(m.group(2))

    # what the registry now serves for the tag is exactly what docker pushed
    r = client.get(
        "/v2/e2e/docker-small/manifests/v1",
        headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["docker-content-digest"] == pushed_digest
    assert len(r.content) == pushed_size
    manifest = r.json()
    assert manifest["config"]["digest"] == image_id  # the image id is the config digest
    for layer in manifest["layers"]:
        blob = client.head(f"/v2/e2e/docker-small/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert int(blob.headers["content-length"]) == layer["size"]

    dockerd("rmi", ref, "wharf-e2e/small:loaded")
    assert dockerd("image", "inspect", image_id, check=False).returncode != 0

    pull = dockerd("pull", ref).stdout
    assert f"Digest: {pushed_digest}" in pull, pull
    pulled = _inspect(dockerd, ref)
    assert pulled["Id"] == image_id
    assert f"{repo}@{pushed_digest}" in pulled["RepoDigests"]
    assert pulled["RootFS"]["Layers"] == loaded["RootFS"]["Layers"]

    # and by digest
    dockerd("rmi", ref)
    dockerd("pull", f"{repo}@{pushed_digest}")
    assert _inspect(dockerd, f"{repo}@{pushed_digest}")["Id"] == image_id
    dockerd("rmi", f"{repo}@{pushed_digest}")


def test_docker_pulls_skopeo_pushed_oci_image(
    wharf: WharfServer, dockerd: Dockerd, skopeo: Skopeo, images: ImageSet
) -> None:
    """An OCI manifest (gzip layers) pushed by skopeo is pulled by docker with its digest."""
    small = images["small"]
    ref = f"{wharf.host}/e2e/docker-oci:v1"
    skopeo.copy(images.ref("small"), f"docker://{ref}", "--dest-tls-verify=false")
    pull = dockerd("pull", ref).stdout
    assert f"Digest: {small.digest}" in pull, pull
    pulled = _inspect(dockerd, ref)
    assert pulled["Id"] == small.config_digest
    assert f"{wharf.host}/e2e/docker-oci@{small.digest}" in pulled["RepoDigests"]
    dockerd("rmi", ref)
