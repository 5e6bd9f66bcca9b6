"""Names, references, digests and manifest parsing."""

from __future__ import annotations

import json

import pytest

from registry.content import mediatypes as mt
from registry.content.manifests import parse_manifest
from registry.content.names import check_name, parse_reference
from registry.errors import ManifestInvalid, NameInvalid
from storage.digest import Digest, InvalidDigest

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a-b/c__d/e.f", "x" * 255, "a--b"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "a/../b", "..", "a//b", "/a", "a/", "a%2Fb", "a.", "-a", "a b", "x" * 256, "a___b"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        check_name(name)


def test_references() -> None:
    assert parse_reference("latest") == ("latest", None)
    tag, digest = parse_reference(D1)
    assert tag is None and str(digest) == D1
    for bad in ["-bad", "x" * 129, "sha256:abc", "md5:" + "a" * 32]:
        with pytest.raises(InvalidDigest):
            parse_reference(bad)


def test_digest_parse() -> None:
    assert str(Digest.parse("sha512:" + "0" * 128)) == "sha512:" + "0" * 128
    for bad in ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256", ":" + "a" * 64]:
        with pytest.raises(InvalidDigest):
            Digest.parse(bad)


def _desc(media_type: str, digest: str, size: int = 10) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def test_image_manifest_references() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _desc("application/vnd.oci.image.config.v1+json", D1),
            "layers": [_desc("application/vnd.oci.image.layer.v1.tar+gzip", D2)],
            "subject": _desc(mt.OCI_MANIFEST, D2),
            "annotations": {"k": "v"},
        }
    ).encode()
    m = parse_manifest(body, mt.OCI_MANIFEST)
    assert [str(d.digest) for d in m.blobs] == [D1, D2]
    assert m.subject is not None and str(m.subject.digest) == D2
    assert m.artifact_type == "application/vnd.oci.image.config.v1+json"
    assert m.annotations == {"k": "v"}


def test_index_children_and_artifact_type() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "artifactType": "application/x-thing",
            "manifests": [_desc(mt.OCI_MANIFEST, D1), _desc(mt.OCI_MANIFEST, D2)],
        }
    ).encode()
    m = parse_manifest(body, None)
    assert m.is_index
    assert [str(d.digest) for d in m.manifests] == [D1, D2]
    assert m.artifact_type == "application/x-thing"


def test_foreign_layers_are_not_required() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": _desc("application/vnd.docker.container.image.v1+json", D1),
            "layers": [
                {
                    **_desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", D2),
                    "urls": ["https://example.invalid/layer"],
                }
            ],
        }
    ).encode()
    assert [str(d.digest) for d in parse_manifest(body, mt.DOCKER_MANIFEST).blobs] == [D1]


@pytest.mark.parametrize(
    "doc, ctype, message",
    [
        (b"not json", None, "not valid JSON"),
        (b"[]", None, "JSON object"),
        (
            json.dumps({"schemaVersion": 1, "mediaType": mt.OCI_MANIFEST}).encode(),
            None,
            "schemaVersion",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}).encode(),
            mt.OCI_INDEX,
            "does not match",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}}).encode(),
            None,
            "mediaType missing",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(),
            None,
            "unsupported manifest",
        ),
        (
            json.dumps({"schemaVersion": 1, "mediaType": mt.DOCKER_SCHEMA1_SIGNED}).encode(),
            None,
            "schema 1",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": _desc("x/y", "sha256:zz"),
                }
            ).encode(),
            None,
            "invalid",
        ),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": _desc("x/y", D1, -1)}
            ).encode(),
            None,
            "non-negative",
        ),
    ],
)
def test_invalid_manifests(doc: bytes, ctype: str | None, message: str) -> None:
    with pytest.raises(ManifestInvalid, match=message):
        parse_manifest(doc, ctype)
