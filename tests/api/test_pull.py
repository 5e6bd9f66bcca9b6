"""Pull workflow (distribution-spec v1.1, "Pull"): manifests and blobs, GET and HEAD."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.oci import (
    OCI_MANIFEST,
    assert_error,
    digest_of,
    push_blob,
    push_image,
    unique_name,
)
from tests.support.server import WharfServer

LAYER = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    digest: str
    body: bytes
    layer: bytes
    layer_digest: str


@pytest.fixture(scope="module")
def image(wharf: WharfServer) -> Iterator[Image]:
    name = unique_name("pull")
    with wharf.client() as c:
        digest, body = push_image(c, name, "v1", [LAYER, b"second layer"])
    yield Image(name, "v1", digest, body, LAYER, digest_of(LAYER))


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_get_manifest(client: httpx.Client, image: Image, by: str) -> None:
    ref = image.tag if by == "tag" else image.digest
    r = client.get(f"/v2/{image.name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == image.body  # the exact bytes pushed
    assert r.headers["content-type"] == OCI_MANIFEST
    assert r.headers["docker-content-digest"] == image.digest
    assert r.headers["content-length"] == str(len(image.body))
    assert digest_of(r.content) == image.digest


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_manifest(client: httpx.Client, image: Image, by: str) -> None:
    ref = image.tag if by == "tag" else image.digest
    r = client.head(f"/v2/{image.name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-type"] == OCI_MANIFEST
    assert r.headers["docker-content-digest"] == image.digest
    assert r.headers["content-length"] == str(len(image.body))


def test_get_manifest_without_accept_header(client: httpx.Client, image: Image) -> None:
    r = client.get(f"/v2/{image.name}/manifests/{image.tag}", headers={"Accept": ""})
    assert r.status_code == 200
    assert r.content == image.body


def test_get_blob(client: httpx.Client, image: Image) -> None:
    r = client.get(f"/v2/{image.name}/blobs/{image.layer_digest}")
    assert r.status_code == 200
    assert r.content == image.layer
    assert r.headers["docker-content-digest"] == image.layer_digest
    assert r.headers["content-length"] == str(len(image.layer))
    assert digest_of(r.content) == image.layer_digest


def test_get_config_blob_named_by_manifest(client: httpx.Client, image: Image) -> None:
    config = json.loads(image.body)["config"]
    r = client.get(f"/v2/{image.name}/blobs/{config['digest']}")
    assert r.status_code == 200
    assert len(r.content) == config["size"]
    assert digest_of(r.content) == config["digest"]


def test_head_blob(client: httpx.Client, image: Image) -> None:
    r = client.head(f"/v2/{image.name}/blobs/{image.layer_digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["docker-content-digest"] == image.layer_digest
    assert r.headers["content-length"] == str(len(image.layer))


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10230-99999", 10230, 10239),  # end past the blob is clipped
        ("bytes=10239-10239", 10239, 10239),
    ],
)
def test_range_get_blob(
    client: httpx.Client, image: Image, header: str, start: int, end: int
) -> None:
    r = client.get(f"/v2/{image.name}/blobs/{image.layer_digest}", headers={"Range": header})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(image.layer)}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.content == image.layer[start : end + 1]
    assert r.headers["docker-content-digest"] == image.layer_digest


def test_resumed_pull_reassembles_the_blob(client: httpx.Client, image: Image) -> None:
    got = b""
    while len(got) < len(image.layer):
        r = client.get(
            f"/v2/{image.name}/blobs/{image.layer_digest}",
            headers={"Range": f"bytes={len(got)}-{len(got) + 4095}"},
        )
        assert r.status_code == 206
        got += r.content
    assert got == image.layer


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=20000-20010", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: httpx.Client, image: Image, header: str) -> None:
    r = client.get(f"/v2/{image.name}/blobs/{image.layer_digest}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(image.layer)}"
    # the body may be in any format; a JSON one must use a spec error code
    if r.headers.get("content-type", "").startswith("application/json"):
        assert_error(r, 416, r.json()["errors"][0]["code"])


@pytest.mark.parametrize(
    "header", ["items=0-5", "bytes=0-1,4-5", "bytes=abc", "bytes=5", "bytes=-", "bytes=9-3"]
)
def test_range_that_is_not_one_byte_range_is_ignored(
    client: httpx.Client, image: Image, header: str
) -> None:
    """RFC 9110: an unknown unit MUST be ignored; other unusable ranges MAY be."""
    r = client.get(f"/v2/{image.name}/blobs/{image.layer_digest}", headers={"Range": header})
    assert r.status_code == 200
    assert r.content == image.layer
    assert "content-range" not in r.headers


@pytest.mark.parametrize("ref", ["nope", "sha256:" + "0" * 64])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_manifest_is_404(client: httpx.Client, image: Image, ref: str, method: str) -> None:
    r = client.request(method, f"/v2/{image.name}/manifests/{ref}")
    assert_error(r, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_blob_is_404(client: httpx.Client, image: Image, method: str) -> None:
    r = client.request(method, f"/v2/{image.name}/blobs/{digest_of(b'never pushed')}")
    assert_error(r, 404, "BLOB_UNKNOWN")


def test_manifest_of_unknown_repository_is_404(client: httpx.Client) -> None:
    r = client.get(f"/v2/{unique_name('ghost')}/manifests/latest")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_blob_is_visible_only_in_its_repository(client: httpx.Client) -> None:
    data = b"a blob of one repository"
    digest = push_blob(client, unique_name("mine"), data)
    r = client.get(f"/v2/{unique_name('theirs')}/blobs/{digest}")
    assert_error(r, 404, "BLOB_UNKNOWN")


def test_empty_blob(client: httpx.Client) -> None:
    name = unique_name("empty")
    digest = push_blob(client, name, b"")
    r = client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == "0"
    assert r.headers["docker-content-digest"] == digest
