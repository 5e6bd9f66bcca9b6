"""OCI 1.1 artifacts pushed with skopeo show up in the referrers API of their subject."""

from __future__ import annotations

import httpx
import pytest

from tests.support.clients import Skopeo
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    ImageSet,
    read_blob,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

REPO = "e2e/signed"


@pytest.fixture(scope="module")
def pushed(wharf: WharfServer, skopeo: Skopeo, images: ImageSet) -> ImageSet:
    """``small`` plus two artifacts whose subject is ``small``, all pushed by skopeo."""
    for tag in ("small", "artifact", "sbom"):
        skopeo.copy(
            images.ref(tag), f"docker://{wharf.host}/{REPO}:{tag}", "--dest-tls-verify=false"
        )
    return images


def test_artifact_manifest_stored_verbatim(
    pushed: ImageSet, client: httpx.Client, skopeo: Skopeo, wharf: WharfServer
) -> None:
    art = pushed["artifact"]
    r = client.get(f"/v2/{REPO}/manifests/artifact", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == art.digest
    assert r.content == read_blob(pushed.layout, art.digest)
    body = r.json()
    assert body["artifactType"] == SIGNATURE_TYPE
    assert body["subject"]["digest"] == pushed["small"].digest
    raw = skopeo.inspect_raw(f"docker://{wharf.host}/{REPO}@{art.digest}", "--tls-verify=false")
    assert raw == r.content


def test_referrers_lists_artifacts(pushed: ImageSet, client: httpx.Client) -> None:
    small, art, sbom = pushed["small"], pushed["artifact"], pushed["sbom"]
    r = client.get(f"/v2/{REPO}/referrers/{small.digest}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(OCI_INDEX)
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    found = {m["digest"]: m for m in index["manifests"]}
    assert set(found) == {art.digest, sbom.digest}
    for image, artifact_type in ((art, SIGNATURE_TYPE), (sbom, SBOM_TYPE)):
        desc = found[image.digest]
        assert desc["mediaType"] == OCI_MANIFEST
        assert desc["size"] == image.size
        assert desc["artifactType"] == artifact_type
        assert desc.get("annotations", {}).get("org.opencontainers.image.title") == image.name


def test_referrers_artifact_type_filter(pushed: ImageSet, client: httpx.Client) -> None:
    small, art = pushed["small"], pushed["artifact"]
    r = client.get(f"/v2/{REPO}/referrers/{small.digest}", params={"artifactType": SIGNATURE_TYPE})
    assert r.status_code == 200, r.text
    assert r.headers.get("oci-filters-applied") == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [art.digest]

    r = client.get(
        f"/v2/{REPO}/referrers/{small.digest}", params={"artifactType": "application/x-none"}
    )
    assert r.status_code == 200
    assert r.headers.get("oci-filters-applied") == "artifactType"
    assert r.json()["manifests"] == []

    # without a filter the header is absent
    r = client.get(f"/v2/{REPO}/referrers/{small.digest}")
    assert "oci-filters-applied" not in r.headers


def test_referrers_of_unreferenced_manifest_is_empty(
    pushed: ImageSet, client: httpx.Client
) -> None:
    art = pushed["artifact"]
    r = client.get(f"/v2/{REPO}/referrers/{art.digest}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []
