"""Content management (distribution-spec v1.1): deleting manifests, tags and blobs."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.oci import (
    OCI_MANIFEST,
    assert_error,
    digest_of,
    push_blob,
    push_image,
    put_manifest,
    unique_name,
)
from tests.support.server import WharfServer


def test_delete_manifest_by_digest(client: httpx.Client) -> None:
    name = unique_name("del")
    digest, body = push_image(client, name, "v1", [b"delete me"])
    assert put_manifest(client, name, "v1-alias", body, OCI_MANIFEST).status_code == 201
    r = client.delete(f"/v2/{name}/manifests/{digest}")
    assert r.status_code == 202
    assert r.content == b""
    # gone by digest and by every tag that pointed at it
    for ref in (digest, "v1", "v1-alias"):
        assert_error(client.get(f"/v2/{name}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        assert_error(client.head(f"/v2/{name}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == []
    assert_error(client.delete(f"/v2/{name}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_tag_removes_only_the_tag(client: httpx.Client) -> None:
    name = unique_name("del")
    digest, body = push_image(client, name, "v1", [b"untag me"])
    assert put_manifest(client, name, "stable", body, OCI_MANIFEST).status_code == 201
    r = client.delete(f"/v2/{name}/manifests/v1")
    assert r.status_code == 202
    assert_error(client.get(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    r = client.get(f"/v2/{name}/manifests/{digest}")
    assert r.status_code == 200 and r.content == body
    assert client.get(f"/v2/{name}/manifests/stable").status_code == 200
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["stable"]
    assert_error(client.delete(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_delete_then_push_again(client: httpx.Client) -> None:
    name = unique_name("del")
    digest, body = push_image(client, name, "v1", [b"again"])
    assert client.delete(f"/v2/{name}/manifests/{digest}").status_code == 202
    assert put_manifest(client, name, "v1", body, OCI_MANIFEST).status_code == 201
    r = client.get(f"/v2/{name}/manifests/v1")
    assert r.status_code == 200 and r.content == body


def test_delete_blob(client: httpx.Client) -> None:
    name, data = unique_name("del"), b"a blob to delete"
    digest = push_blob(client, name, data)
    r = client.delete(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 202
    assert r.content == b""
    assert_error(client.head(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_only_unlinks_it_from_that_repository(client: httpx.Client) -> None:
    one, two, data = unique_name("del"), unique_name("del"), b"shared blob"
    digest = push_blob(client, one, data)
    push_blob(client, two, data)
    assert client.delete(f"/v2/{one}/blobs/{digest}").status_code == 202
    assert client.head(f"/v2/{one}/blobs/{digest}").status_code == 404
    r = client.get(f"/v2/{two}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data


def test_delete_unknown_content(client: httpx.Client) -> None:
    name = unique_name("del")
    push_image(client, name, "v1", [b"exists"])
    missing = digest_of(b"never pushed")
    assert_error(client.delete(f"/v2/{name}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/{name}/manifests/{missing}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.delete(f"/v2/{name}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    ghost = unique_name("ghost")
    assert client.delete(f"/v2/{ghost}/manifests/{missing}").status_code == 404


def test_deletes_disabled(make_wharf: Callable[..., WharfServer]) -> None:
    server = make_wharf({"storage": {"delete": {"enabled": False}}})
    name = unique_name("keep")
    with server.client() as c:
        digest, body = push_image(c, name, "v1", [b"undeletable"])
        layer = digest_of(b"undeletable")
        for path in (
            f"/v2/{name}/manifests/{digest}",
            f"/v2/{name}/manifests/v1",
            f"/v2/{name}/blobs/{layer}",
        ):
            assert_error(c.delete(path), 405, "UNSUPPORTED")
        # nothing was deleted
        assert c.get(f"/v2/{name}/manifests/v1").content == body
        assert c.get(f"/v2/{name}/manifests/{digest}").status_code == 200
        assert c.get(f"/v2/{name}/blobs/{layer}").content == b"undeletable"
