"""Hostile manifests (issue #13): nesting deeper than any real manifest, numbers the
database cannot hold, text that is not text. Each is refused with 400 MANIFEST_INVALID
and changes nothing (catalog, tags, stored files), and the same manifest with the field
put right goes in. An odd config blob is no reason to refuse a push: facts are best effort."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    blob_file,
    descriptor,
    digest_of,
    image_manifest,
    push_blob,
    put_manifest,
    unique_name,
)
from tests.support.server import WharfServer

OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
DEEP = 100_000  # far beyond the interpreter's recursion limit
CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
LAYER = b"hostile layer"


@dataclass
class Repo:
    """A repository holding a config, a layer and a child manifest (by digest) to point at."""

    name: str
    child: bytes  # an image manifest pushed by digest


@pytest.fixture
def repo(client: httpx.Client) -> Repo:
    name = unique_name("hostile")
    push_blob(client, name, CONFIG)
    push_blob(client, name, LAYER)
    child = json.dumps(image_manifest(CONFIG, [LAYER])).encode()
    assert put_manifest(client, name, digest_of(child), child, OCI_MANIFEST).status_code == 201
    return Repo(name, child)


def stored_files(server: WharfServer) -> set[Path]:
    return {p.relative_to(server.root) for p in server.root.rglob("*") if p.is_file()}


def state(client: httpx.Client, server: WharfServer, name: str) -> dict[str, Any]:
    """What a refused push must not change."""
    catalog = client.get("/v2/_catalog")
    assert catalog.status_code == 200
    tags = client.get(f"/v2/{name}/tags/list")
    return {
        "catalog": catalog.json()["repositories"],
        "tags": tags.json()["tags"] if tags.status_code == 200 else tags.status_code,
        "files": stored_files(server),
    }


def assert_refused(
    client: httpx.Client, server: WharfServer, name: str, body: bytes, media_type: str
) -> dict[str, Any]:
    """PUT ``body`` as tag ``bad``: 400 MANIFEST_INVALID, and nothing changed."""
    before = state(client, server, name)
    r = put_manifest(client, name, "bad", body, media_type)
    err = assert_error(r, 400, "MANIFEST_INVALID")
    assert err["message"] != "manifest invalid"  # says what is wrong
    assert state(client, server, name) == before
    assert_error(client.get(f"/v2/{name}/manifests/bad"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/manifests/{digest_of(body)}"), 404, "MANIFEST_UNKNOWN")
    assert not blob_file(server.root, digest_of(body)).exists()
    assert client.get("/v2/").status_code == 200
    return err


def assert_pushed(client: httpx.Client, name: str, body: bytes, media_type: str) -> None:
    r = put_manifest(client, name, "good", body, media_type)
    assert r.status_code == 201, r.text
    got = client.get(f"/v2/{name}/manifests/good", headers={"Accept": media_type})
    assert got.status_code == 200 and got.content == body


# -- nesting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b"[" * DEEP,  # not even closed
        b'{"schemaVersion": 2, "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ],
    ids=["arrays", "objects", "unclosed", "in-a-field"],
)
def test_deeply_nested_json_is_refused(
    client: httpx.Client, wharf: WharfServer, repo: Repo, body: bytes
) -> None:
    err = assert_refused(client, wharf, repo.name, body, OCI_MANIFEST)
    assert "nested" in err["message"]


def test_nesting_limit_does_not_depend_on_the_recursion_limit(
    client: httpx.Client, wharf: WharfServer, repo: Repo
) -> None:
    """300 levels parse fine in Python, but are over the registry's limit of 256; a valid
    manifest with 200 levels in an unknown field is taken."""

    def nested(depth: int) -> bytes:
        doc = image_manifest(CONFIG, [LAYER])
        doc["x"] = "X"
        text = json.dumps(doc).replace('"X"', "[" * (depth - 1) + "]" * (depth - 1))
        return text.encode()

    err = assert_refused(client, wharf, repo.name, nested(300), OCI_MANIFEST)
    assert "300 levels" in err["message"]
    assert_pushed(client, repo.name, nested(200), OCI_MANIFEST)


# -- numbers and text ----------------------------------------------------------------

BAD_SIZES = [2**63, 2**64, -1, 1.5, True, "13", None]


def with_size(repo: Repo, where: str, size: object) -> tuple[dict[str, Any], str]:
    """A manifest of the repository's content whose descriptor at ``where`` has ``size``."""
    if where == "config":
        doc = image_manifest(CONFIG, [LAYER])
        doc["config"]["size"] = size
        return doc, OCI_MANIFEST
    if where == "layer":
        doc = image_manifest(CONFIG, [LAYER])
        doc["layers"][0]["size"] = size
        return doc, OCI_MANIFEST
    if where == "index":
        child = descriptor(OCI_MANIFEST, repo.child, size=size)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}, OCI_INDEX
    if where == "subject":
        doc = image_manifest(CONFIG, [LAYER])
        doc["subject"] = descriptor(OCI_MANIFEST, repo.child, size=size)
        return doc, OCI_MANIFEST
    assert where == "blobs"
    doc = {
        "mediaType": OCI_ARTIFACT,
        "artifactType": "application/x-test",
        "blobs": [descriptor(OCI_LAYER, LAYER, size=size)],
    }
    return doc, OCI_ARTIFACT


@pytest.mark.parametrize("where", ["config", "layer", "index", "subject", "blobs"])
@pytest.mark.parametrize("size", BAD_SIZES, ids=lambda s: f"{type(s).__name__}-{s}")
def test_size_outside_64_bits_or_not_an_integer_is_refused(
    client: httpx.Client, wharf: WharfServer, repo: Repo, where: str, size: object
) -> None:
    doc, media_type = with_size(repo, where, size)
    err = assert_refused(client, wharf, repo.name, json.dumps(doc).encode(), media_type)
    assert "size" in err["message"]
    # the same manifest with the true size goes in
    true_size = {"config": len(CONFIG), "index": len(repo.child), "subject": len(repo.child)}
    good, media_type = with_size(repo, where, true_size.get(where, len(LAYER)))
    assert_pushed(client, repo.name, json.dumps(good).encode(), media_type)


def test_largest_size_is_taken(client: httpx.Client, repo: Repo) -> None:
    """2^63-1 fits: sizes are not checked against the blob (a registry may not know them);
    two of them in one manifest add up to more than 64 bits, and still the push goes in."""
    doc = image_manifest(CONFIG, [LAYER, LAYER])
    for layer in doc["layers"]:
        layer["size"] = 2**63 - 1
    assert_pushed(client, repo.name, json.dumps(doc).encode(), OCI_MANIFEST)
    r = client.get("/api/search/image", params={"name": repo.name, "reference": "good"})
    assert r.status_code == 200, r.text
    assert [x["size"] for x in r.json()["layers"]] == [2**63 - 1, 2**63 - 1]


def test_index_of_children_near_the_limit_is_taken(client: httpx.Client, repo: Repo) -> None:
    """Two children of over 2^62 bytes each: their sum fits no 64-bit column, and still
    the index goes in (with no total), where a SQL sum() once overflowed."""
    children = []
    for n in range(2):
        doc = image_manifest(CONFIG, [LAYER])
        doc["layers"][0]["size"] = 2**62
        doc["annotations"] = {"n": str(n)}
        body = json.dumps(doc).encode()
        r = put_manifest(client, repo.name, digest_of(body), body, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        children.append(descriptor(OCI_MANIFEST, body))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    assert_pushed(client, repo.name, json.dumps(index).encode(), OCI_INDEX)


def manifest_text(old: str, new: str | bytes, **extra: Any) -> bytes:
    """An image manifest of the repository's content as JSON, with the JSON text ``old``
    (there once) replaced by ``new`` (bytes: as they are, even if they are not UTF-8)."""
    body = json.dumps(image_manifest(CONFIG, [LAYER], **extra)).encode()
    assert body.count(old.encode()) == 1
    return body.replace(old.encode(), new if isinstance(new, bytes) else new.encode())


LAYER_SIZE = f'"size": {len(LAYER)}'
NOT_STORABLE = {
    "nan-size": manifest_text(LAYER_SIZE, '"size": NaN'),
    "infinite-size": manifest_text(LAYER_SIZE, '"size": 1e400'),
    "5000-digit-size": manifest_text(LAYER_SIZE, '"size": ' + "9" * 5000),
    "nan-in-a-field": manifest_text('"X"', '{"os": "linux", "n": NaN}', x="X"),
    "lone-surrogate-annotation": manifest_text('"X"', '"\\ud800"', annotations={"k": "X"}),
    "lone-surrogate-artifact-type": manifest_text('"X"', '"a/\\udfff"', artifactType="X"),
    "lone-surrogate-utf8": manifest_text('"X"', b'"\xed\xa0\x80"', annotations={"k": "X"}),
    "not-utf8": manifest_text('"X"', b'"\xff"', annotations={"k": "X"}),
    "long-media-type": manifest_text(f'"{OCI_LAYER}"', f'"x/{"y" * 300}"'),
    "long-artifact-type": manifest_text('"X"', f'"x/{"y" * 300}"', artifactType="X"),
}


@pytest.mark.parametrize("body", list(NOT_STORABLE.values()), ids=list(NOT_STORABLE))
def test_values_no_database_holds_are_refused(
    client: httpx.Client, wharf: WharfServer, repo: Repo, body: bytes
) -> None:
    assert_refused(client, wharf, repo.name, body, OCI_MANIFEST)
    assert_pushed(
        client, repo.name, json.dumps(image_manifest(CONFIG, [LAYER])).encode(), OCI_MANIFEST
    )


def test_emoji_escapes_are_text(client: httpx.Client, repo: Repo) -> None:
    """A surrogate pair (how json.dumps writes an emoji) is one character: taken."""
    doc = image_manifest(CONFIG, [LAYER], annotations={"org.example.mood": "\U0001f600"})
    body = json.dumps(doc).encode()
    assert b"\\ud83d\\ude00" in body
    assert_pushed(client, repo.name, body, OCI_MANIFEST)
    r = client.get("/api/search/image", params={"name": repo.name, "reference": "good"})
    assert r.status_code == 200, r.text
    assert r.json()["annotations"] == {"org.example.mood": "\U0001f600"}


# -- references ----------------------------------------------------------------------


def test_missing_blob_changes_nothing_visible(
    client: httpx.Client, wharf: WharfServer, repo: Repo
) -> None:
    """Refused in the push transaction: no tag, no manifest, and the catalog as it was.
    Its bytes, stored before the transaction as every manifest's are, are an orphan GC
    collects (tests/api/test_gc.py checks that a dry run lists them)."""
    body = json.dumps(image_manifest(CONFIG, [LAYER, b"never pushed"])).encode()
    before = state(client, wharf, repo.name)
    r = put_manifest(client, repo.name, "bad", body, OCI_MANIFEST)
    err = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert err["detail"] == {"missing": [digest_of(b"never pushed")]}
    after = state(client, wharf, repo.name)
    assert after["catalog"] == before["catalog"] and after["tags"] == before["tags"]
    assert after["files"] - before["files"] <= {
        blob_file(wharf.root, digest_of(body)).relative_to(wharf.root)
    }
    assert_error(client.get(f"/v2/{repo.name}/manifests/bad"), 404, "MANIFEST_UNKNOWN")
    by_digest = client.get(f"/v2/{repo.name}/manifests/{digest_of(body)}")
    assert_error(by_digest, 404, "MANIFEST_UNKNOWN")


# -- odd config blobs ----------------------------------------------------------------

ODD_CONFIGS = {
    "deep-arrays": b'{"os": "linux", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep-objects": b'{"a":' * DEEP + b"{}" + b"}" * DEEP,
    "not-json": os.urandom(4096),
    "not-text": b'{"os": "linux", "architecture": "\xff\xfe"}',
    "array": b"[1, 2, 3]",
    "nan": b'{"os": "linux", "architecture": "amd64", "n": NaN}',
    "huge": json.dumps({"os": "linux", "pad": "p" * (1024 * 1024 + 1)}).encode(),
}


@pytest.mark.parametrize("config", list(ODD_CONFIGS.values()), ids=list(ODD_CONFIGS))
def test_odd_config_is_pushed(client: httpx.Client, wharf: WharfServer, config: bytes) -> None:
    name = unique_name("oddcfg")
    push_blob(client, name, config)
    push_blob(client, name, LAYER)
    body = json.dumps(image_manifest(config, [LAYER])).encode()
    assert_pushed(client, name, body, OCI_MANIFEST)
    assert client.get(f"/v2/{name}/blobs/{digest_of(config)}").content == config
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["good"]
    r = client.get("/api/search", params={"repository": name})
    assert r.status_code == 200, r.text
    assert [(x["repository"], x["tag"]) for x in r.json()["results"]] == [(name, "good")]
    r = client.get("/api/search/image", params={"name": name, "reference": "good"})
    assert r.status_code == 200, r.text
    assert [x["digest"] for x in r.json()["layers"]] == [digest_of(LAYER)]


def test_config_with_wrong_types_gives_what_it_can(client: httpx.Client) -> None:
    name = unique_name("oddcfg")
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "arm64",
            "variant": 8,
            "created": 1700000000,
            "author": ["not", "a", "string"],
            "config": {
                "Labels": {"org.example.good": "yes", "bad": 3, "odd": "\ud800", "nested": {}},
                "Entrypoint": "/bin/app",
                "Cmd": [1, None, "--serve", {"a": [1]}],
                "Env": {"A": 1},
                "ExposedPorts": ["80/tcp"],
                "WorkingDir": 42,
            },
            "rootfs": "not an object",
            "history": {"not": "a list"},
        }
    ).encode()
    push_blob(client, name, config)
    push_blob(client, name, LAYER)
    body = json.dumps(image_manifest(config, [LAYER])).encode()
    assert_pushed(client, name, body, OCI_MANIFEST)
    r = client.get("/api/search", params={"label": "org.example.good=yes"})
    assert (name, "good") in [(x["repository"], x["tag"]) for x in r.json()["results"]]
    r = client.get("/api/search", params={"repository": name, "platform": "linux/arm64"})
    assert [(x["repository"], x["tag"]) for x in r.json()["results"]] == [(name, "good")]
    image = client.get("/api/search/image", params={"name": name, "reference": "good"}).json()
    assert image["image"]["labels"]["org.example.good"] == "yes"
    assert "bad" not in image["image"]["labels"]
    assert image["image"]["Entrypoint"] == "/bin/app"
    assert "--serve" in image["image"]["Cmd"]
    assert "created" not in image["image"] and "author" not in image["image"]
