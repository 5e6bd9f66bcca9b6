"""One test per OCI error code the API can produce, checking the JSON error body.

UNAUTHORIZED, DENIED and TOOMANYREQUESTS have no trigger yet (no auth, no rate limit);
they are not faked here.
"""

from __future__ import annotations

import json

import httpx

from registry.errors import ALL_ERRORS
from tests.support.oci import (
    OCI_MANIFEST,
    SPEC_ERROR_CODES,
    assert_error,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    raw_request,
    start_upload,
    unique_name,
)
from tests.support.server import WharfServer

NOT_TRIGGERABLE = {"UNAUTHORIZED", "DENIED", "TOOMANYREQUESTS"}
TESTED = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNSUPPORTED",
}


def test_every_error_code_has_a_test() -> None:
    codes = {cls.code for cls in ALL_ERRORS}
    assert codes == SPEC_ERROR_CODES
    assert codes - NOT_TRIGGERABLE == TESTED


def test_blob_unknown(client: httpx.Client) -> None:
    name = unique_name("err")
    push_blob(client, name, b"known")
    missing = digest_of(b"unknown")
    err = assert_error(client.get(f"/v2/{name}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert err["message"]
    assert err["detail"] == {"digest": missing}


def test_blob_upload_invalid(client: httpx.Client) -> None:
    """Closing an upload without the required ``digest`` parameter."""
    name = unique_name("err")
    location = start_upload(client, name)
    r = client.put(location, content=b"data")
    err = assert_error(r, 400, "BLOB_UPLOAD_INVALID")
    assert err["message"]


def test_blob_upload_unknown(client: httpx.Client) -> None:
    name = unique_name("err")
    bogus = "01234567-89ab-cdef-0123-456789abcdef"
    err = assert_error(client.get(f"/v2/{name}/blobs/uploads/{bogus}"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert err["message"]
    for garbage in ("not-a-uuid", "x" * 300):
        r = client.patch(f"/v2/{name}/blobs/uploads/{garbage}", content=b"abc")
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_blob_upload_unknown_in_another_repository(client: httpx.Client) -> None:
    """An upload session belongs to the repository it was started in."""
    name, other = unique_name("err"), unique_name("err")
    location = start_upload(client, name)
    stolen = location.replace(f"/v2/{name}/", f"/v2/{other}/")
    assert_error(client.get(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(stolen, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.get(location).status_code == 204  # untouched


def test_digest_invalid(client: httpx.Client) -> None:
    name = unique_name("err")
    data, wrong = b"payload", digest_of(b"something else")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": wrong}, content=data)
    err = assert_error(r, 400, "DIGEST_INVALID")
    assert err["message"]
    # a malformed digest is DIGEST_INVALID too
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "nonsense"):
        r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": bad}, content=data)
        assert_error(r, 400, "DIGEST_INVALID")


def test_digest_invalid_manifest_reference(client: httpx.Client) -> None:
    """The conformance suite's check: PUT a manifest to ``sha256:totallywrong``."""
    name = unique_name("err")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    r = put_manifest(client, name, "sha256:totallywrong", body, OCI_MANIFEST)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in SPEC_ERROR_CODES
    # a well-formed digest that does not match the body
    config, layer = b"{}", b"layer"
    for blob in (config, layer):
        push_blob(client, name, blob)
    good = json.dumps(image_manifest(config, [layer])).encode()
    r = put_manifest(client, name, digest_of(b"not the manifest"), good, OCI_MANIFEST)
    assert_error(r, 400, "DIGEST_INVALID")


def test_manifest_blob_unknown(client: httpx.Client) -> None:
    name = unique_name("err")
    config, layer = b'{"c": 1}', b"never uploaded layer"
    push_blob(client, name, config)
    body = json.dumps(image_manifest(config, [layer])).encode()
    err = assert_error(
        put_manifest(client, name, "v1", body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    assert digest_of(layer) in json.dumps(err.get("detail"))


def test_manifest_invalid(client: httpx.Client) -> None:
    name = unique_name("err")
    for body in (
        b"not json at all",
        b"[]",
        json.dumps({"schemaVersion": 1, "mediaType": OCI_MANIFEST}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "x"}).encode(),
    ):
        err = assert_error(
            put_manifest(client, name, "bad", body, OCI_MANIFEST), 400, "MANIFEST_INVALID"
        )
        assert err["message"]


def test_manifest_unknown(client: httpx.Client) -> None:
    name = unique_name("err")
    push_image(client, name, "v1", [b"l"])
    err = assert_error(client.get(f"/v2/{name}/manifests/v2"), 404, "MANIFEST_UNKNOWN")
    assert err["message"]


def test_name_invalid(client: httpx.Client) -> None:
    err = assert_error(client.get("/v2/Bad-Name/tags/list"), 400, "NAME_INVALID")
    assert err["message"]


def test_name_unknown(client: httpx.Client) -> None:
    err = assert_error(client.get(f"/v2/{unique_name('ghost')}/tags/list"), 404, "NAME_UNKNOWN")
    assert err["message"]


def test_size_invalid(client: httpx.Client) -> None:
    """A chunk whose Content-Range does not match its Content-Length."""
    name = unique_name("err")
    location = start_upload(client, name)
    r = client.patch(location, content=b"hello", headers={"Content-Range": "0-9"})
    err = assert_error(r, 400, "SIZE_INVALID")
    assert err["message"]
    status = client.get(location)
    assert status.status_code == 204 and status.headers["range"] == "0-0"  # nothing taken
    r = client.patch(location, content=b"hello", headers={"Content-Range": "0-4"})
    assert r.status_code == 202


def test_unsupported_method(client: httpx.Client) -> None:
    name = unique_name("err")
    r = client.request("PATCH", f"/v2/{name}/manifests/latest")
    err = assert_error(r, 405, "UNSUPPORTED")
    assert err["message"]
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT", "DELETE"}
    assert_error(client.post(f"/v2/{name}/tags/list"), 405, "UNSUPPORTED")


def test_error_body_of_head_request_is_empty(client: httpx.Client) -> None:
    r = client.head(f"/v2/{unique_name('ghost')}/manifests/latest")
    assert r.status_code == 404
    assert r.content == b""


def test_unknown_route_does_not_invent_an_error_code(wharf: WharfServer) -> None:
    """A 4xx JSON body must use a spec code; a path outside the API is a plain 404."""
    status, headers, body = raw_request(wharf.host.split(":")[0], wharf.port, "GET", "/v2/x/y/z")
    assert status == 404
    if body and headers.get("content-type", "").startswith("application/json"):
        codes = {e["code"] for e in json.loads(body)["errors"]}
        assert codes <= SPEC_ERROR_CODES
