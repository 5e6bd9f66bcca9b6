"""What the search index learns from a manifest and its config (no server)."""

from __future__ import annotations

import json

from registry.content.manifests import parse_manifest
from registry.search.facts import config_facts, manifest_details
from registry.search.query import Params, parse_query
from registry.ui.app import short_digest
from registry.ui.session import Session, SessionCodec

CONFIG = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "created": "2026-11-01T10:00:00Z",
    "config": {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Env": ["A=1"],
        "Labels": {"tier": "web", "bad": 3},
        "ExposedPorts": {"8080/tcp": {}},
    },
}


def _manifest(config: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + "a" * 64,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + "b" * 64,
                    "size": 1000,
                }
            ],
            "annotations": {"org.opencontainers.image.revision": "abc"},
        }
    ).encode()


def test_config_facts() -> None:
    facts = config_facts(json.dumps(CONFIG).encode())
    assert facts["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert facts["labels"] == {"tier": "web"}  # non-string values are not labels
    assert facts["Entrypoint"] == ["/bin/app"]
    assert facts["ExposedPorts"] == ["8080/tcp"]
    assert facts["created"] == "2026-11-01T10:00:00Z"


def test_config_that_is_not_json_gives_nothing() -> None:
    assert config_facts(b"\x00\xff not json") == {}
    assert config_facts(b"[1, 2]") == {}


def test_image_details() -> None:
    config = json.dumps(CONFIG).encode()
    parsed = parse_manifest(_manifest(config), None)
    details = manifest_details(parsed, config)
    assert details["labels"] == {"tier": "web"}
    assert details["platforms"] == [{"os": "linux", "architecture": "arm64", "variant": "v8"}]
    assert details["annotations"] == {"org.opencontainers.image.revision": "abc"}
    assert details["total_size"] == len(config) + 1000
    detail = details["detail"]
    assert isinstance(detail, dict)
    assert [layer["digest"] for layer in detail["layers"]] == ["sha256:" + "b" * 64]


def test_index_details_name_children_and_platforms() -> None:
    child = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "c" * 64,
        "size": 500,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child],
        }
    ).encode()
    details = manifest_details(parse_manifest(body, None), None)
    assert details["children"] == ["sha256:" + "c" * 64]
    assert details["platforms"] == [{"os": "linux", "architecture": "amd64"}]


def test_query_parameters() -> None:
    q = parse_query(
        Params(
            [("label", "a=b"), ("label", "c"), ("platform", "linux/arm/v7"), ("sort", "-pushed")]
        )
    )
    assert q.filter.labels == (("a", "b"), ("c", None))
    assert q.filter.platform == ("linux", "arm", "v7")
    assert (q.sort, q.descending) == ("pushed", True)


def test_session_cookie_round_trip_and_forgery() -> None:
    codec = SessionCodec("secret-1")
    session = Session("alice", ("team-a",))
    loaded = codec.load(codec.dump(session))
    assert (loaded.user, loaded.groups, loaded.csrf) == ("alice", ("team-a",), session.csrf)
    assert loaded.check_csrf(session.csrf) and not loaded.check_csrf("other")
    assert SessionCodec("secret-2").load(codec.dump(session)).user is None  # another key
    assert codec.load("garbage").user is None
    header = codec.header(session, secure=True)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    assert "Secure" not in codec.header(session, secure=False)


def test_formatting() -> None:
    assert short_digest("sha256:" + "0123456789abcdef" * 4) == "sha256:0123456789ab"
