"""Bad input and broken transfers: each is refused or recovered from, no partial blob
becomes visible, and the registry keeps serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.oci import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    SPEC_ERROR_CODES,
    assert_error,
    assert_serving,
    blob_file,
    descriptor,
    digest_of,
    image_manifest,
    push_blob,
    raw_request,
    start_upload,
    unique_name,
    upload_ids,
)
from tests.support.server import WharfServer


def assert_no_blob(client: httpx.Client, server: WharfServer, name: str, *digests: str) -> None:
    """Neither visible through the API nor stored under its content address."""
    for digest in digests:
        assert_error(client.head(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert_error(client.get(f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert not blob_file(server.root, digest).exists()


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def upload_offset(client: httpx.Client, location: str) -> int:
    r = client.get(location)
    assert r.status_code == 204, r.text
    end = int(r.headers["range"].split("-")[1])
    return 0 if end == 0 else end + 1  # "0-0" is an empty upload here (never one byte)


def finish_resumed(client: httpx.Client, location: str, data: bytes) -> httpx.Response:
    """Resume from where the registry says the upload is, then close it."""
    for _ in range(100):
        offset = upload_offset(client, location)
        assert offset <= len(data)
        r = client.patch(
            location,
            content=data[offset:],
            headers={"Content-Range": f"{offset}-{len(data) - 1}"},
        )
        if r.status_code == 416:  # an interrupted request was still landing; ask again
            time.sleep(0.05)
            continue
        assert r.status_code == 202, r.text
        return client.put(r.headers["location"], params={"digest": digest_of(data)})
    raise AssertionError("upload never settled")


def send_partial(server: WharfServer, head: bytes, body: bytes) -> None:
    """Send a request head and part of its body on a raw socket, then close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            while s.recv(65536):  # whatever the server says before it closes
                pass
        except (ConnectionResetError, TimeoutError):
            pass


# -- wrong digest --------------------------------------------------------------------


def test_wrong_digest_on_put(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("bad"), os.urandom(200_000)
    wrong = digest_of(b"what the client claims")
    location = start_upload(client, name)
    r = client.put(location, params={"digest": wrong}, content=data)
    err = assert_error(r, 400, "DIGEST_INVALID")
    assert err["message"]
    assert_no_blob(client, wharf, name, wrong, digest_of(data))
    # the failed session is gone: nothing left to resume
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert location.rsplit("/", 1)[1] not in upload_ids(wharf.root)
    assert_serving(client)


def test_wrong_digest_after_chunks(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("bad"), os.urandom(100_000)
    location = start_upload(client, name)
    r = client.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert r.status_code == 202
    wrong = digest_of(data + b"!")
    assert_error(client.put(location, params={"digest": wrong}), 400, "DIGEST_INVALID")
    assert_no_blob(client, wharf, name, wrong, digest_of(data))
    assert_serving(client)


# -- truncated transfers -------------------------------------------------------------


def test_truncated_monolithic_upload(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("trunc"), os.urandom(3 * 1024 * 1024)
    digest = digest_of(data)
    before = upload_ids(wharf.root)
    head = (
        f"POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: {wharf.host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    send_partial(wharf, head, data[: len(data) // 2])
    # the session behind the single POST is cleaned up, and nothing became a blob
    wait_for(lambda: upload_ids(wharf.root) <= before)
    assert_no_blob(client, wharf, name, digest)
    assert_serving(client)
    # the client can simply try again
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201


def test_truncated_put_leaves_a_resumable_upload(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("trunc"), os.urandom(2 * 1024 * 1024 + 3)
    digest = digest_of(data)
    location = start_upload(client, name)
    head = (
        f"PUT {location}?digest={digest} HTTP/1.1\r\nHost: {wharf.host}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    send_partial(wharf, head, data[:1_000_000])
    assert_no_blob(client, wharf, name, digest)
    assert upload_offset(client, location) <= 1_000_000
    assert_serving(client)
    r = finish_resumed(client, location, data)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{digest}").content == data


def test_truncated_patch_keeps_what_arrived(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("trunc"), os.urandom(1_500_000)
    location = start_upload(client, name)
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: {wharf.host}\r\n"
        f"Content-Range: 0-{len(data) - 1}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    send_partial(wharf, head, data[:700_000])
    assert_no_blob(client, wharf, name, digest_of(data))
    r = finish_resumed(client, location, data)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{digest_of(data)}").content == data


# -- chunks --------------------------------------------------------------------------


@pytest.mark.parametrize("content_range", ["5-9", "1-5", "0-2", "bogus", "9-3", "-1-4"])
def test_bad_first_chunk(client: httpx.Client, wharf: WharfServer, content_range: str) -> None:
    """Out of order (does not start at 0) or malformed: 416 (a size mismatch: 400)."""
    name, data = unique_name("chunk"), os.urandom(5)
    location = start_upload(client, name)
    r = client.patch(location, content=data, headers={"Content-Range": content_range})
    if content_range == "0-2":  # right start, wrong length for a 5-byte body
        assert_error(r, 400, "SIZE_INVALID")
    else:
        assert r.status_code == 416, r.text
    assert upload_offset(client, location) == 0  # nothing was taken
    assert_no_blob(client, wharf, name, digest_of(data))
    r = client.put(location, params={"digest": digest_of(data)}, content=data)
    assert r.status_code == 201
    assert_serving(client)


def test_chunk_overlapping_the_end(client: httpx.Client, wharf: WharfServer) -> None:
    name, data = unique_name("chunk"), os.urandom(30)
    location = start_upload(client, name)
    assert client.patch(location, content=data[:20], headers={"Content-Range": "0-19"}).is_success
    r = client.patch(location, content=data[10:], headers={"Content-Range": "10-29"})
    assert r.status_code == 416
    assert r.headers["range"] == "0-19"
    assert upload_offset(client, location) == 20
    assert_no_blob(client, wharf, name, digest_of(data))


# -- manifests -----------------------------------------------------------------------


def test_manifest_with_missing_blob_tags_nothing(client: httpx.Client) -> None:
    name = unique_name("man")
    config, layer = b'{"x": 1}', b"missing layer"
    push_blob(client, name, config)
    body = json.dumps(image_manifest(config, [layer])).encode()
    r = client.put(
        f"/v2/{name}/manifests/latest", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/manifests/latest"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/manifests/{digest_of(body)}"), 404, "MANIFEST_UNKNOWN")
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 404 or r.json()["tags"] == []
    assert name not in client.get("/v2/_catalog").json()["repositories"]
    # once the blob is there, the same manifest goes in
    push_blob(client, name, layer)
    r = client.put(
        f"/v2/{name}/manifests/latest", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201


def test_index_with_missing_child_manifest(client: httpx.Client) -> None:
    name = unique_name("man")
    child = json.dumps(image_manifest(b"c", [b"l"])).encode()
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, child)]}
    ).encode()
    r = client.put(f"/v2/{name}/manifests/idx", content=index, headers={"Content-Type": OCI_INDEX})
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert client.get(f"/v2/{name}/manifests/idx").status_code == 404


def test_blob_of_another_repository_does_not_satisfy_a_manifest(client: httpx.Client) -> None:
    name, other = unique_name("man"), unique_name("man")
    config, layer = b'{"y": 2}', b"layer elsewhere"
    push_blob(client, name, config)
    push_blob(client, other, layer)
    body = json.dumps(image_manifest(config, [layer])).encode()
    r = client.put(f"/v2/{name}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize("tag", [".hidden", "-dash", "a" * 129, "t%2Fx", "t:x"])
def test_invalid_tag_is_refused(client: httpx.Client, wharf: WharfServer, tag: str) -> None:
    name = unique_name("tag")
    config, layer = b'{"t": 1}', b"tagged layer"
    for blob in (config, layer):
        push_blob(client, name, blob)
    body = json.dumps(image_manifest(config, [layer])).encode()
    status, _, content = raw_request(
        "127.0.0.1",
        wharf.port,
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        {"Content-Type": OCI_MANIFEST},
        body,
    )
    assert status == 400, content
    assert {e["code"] for e in json.loads(content)["errors"]} <= SPEC_ERROR_CODES
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == []
    assert_error(client.get(f"/v2/{name}/manifests/{digest_of(body)}"), 404, "MANIFEST_UNKNOWN")


def big_manifest(size: int) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [],
        "annotations": {"padding": ""},
    }
    pad = size - len(json.dumps(doc).encode())
    doc["annotations"] = {"padding": "p" * pad}
    body = json.dumps(doc).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("streamed", [False, True])
def test_oversized_manifest_is_rejected(
    client: httpx.Client, wharf: WharfServer, streamed: bool
) -> None:
    name = unique_name("big")
    push_blob(client, name, EMPTY_JSON)
    body = big_manifest(5 * 1024 * 1024)

    def chunks() -> object:
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    r = client.put(
        f"/v2/{name}/manifests/huge",
        content=chunks() if streamed else body,  # type: ignore[arg-type]
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code in (400, 413), r.text
    assert r.json()["errors"][0]["code"] in ("MANIFEST_INVALID", "SIZE_INVALID")
    assert_error(r, r.status_code, r.json()["errors"][0]["code"])
    assert_error(client.get(f"/v2/{name}/manifests/huge"), 404, "MANIFEST_UNKNOWN")
    assert not blob_file(wharf.root, digest_of(body)).exists()
    assert_serving(client)


def test_four_megabyte_manifest_is_accepted(client: httpx.Client) -> None:
    """The spec: registries SHOULD accept manifests of at least 4 megabytes."""
    name = unique_name("big")
    push_blob(client, name, EMPTY_JSON)
    body = big_manifest(4_000_000)
    r = client.put(
        f"/v2/{name}/manifests/4mb", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/manifests/4mb").content == body


def test_manifest_limit_follows_the_config(make_wharf: Callable[..., WharfServer]) -> None:
    server = make_wharf(
        {"validation": {"manifestmaxsize": 6 * 1024 * 1024}, "http": {"workers": 1}}
    )
    with server.client() as c:
        name = unique_name("big")
        push_blob(c, name, EMPTY_JSON)
        body = big_manifest(5 * 1024 * 1024)
        headers = {"Content-Type": OCI_MANIFEST}
        assert c.put(f"/v2/{name}/manifests/5mb", content=body, headers=headers).status_code == 201
        assert c.get(f"/v2/{name}/manifests/5mb").content == body
        r = c.put(
            f"/v2/{name}/manifests/7mb", content=big_manifest(7 * 1024 * 1024), headers=headers
        )
        assert_error(r, 413, "MANIFEST_INVALID")


# -- repository names ----------------------------------------------------------------

BAD_NAMES = [
    "Upper",
    "a/Upper/b",
    "..",
    "a/../b",
    "a/./b",
    "a%2Fb",
    "a%2fb",
    "%2e%2e",
    "a//b",
    "a/b/",
    "-lead",
    "trail-",
    "a..b",
    "a___b",
    "a%20b",
    "a" * 300,
    "/".join(["abcdefg"] * 40),  # valid components, 319 characters
]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda n: n if len(n) < 20 else f"len{len(n)}")
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "/tags/list"),
        ("GET", "/manifests/latest"),
        ("PUT", "/manifests/latest"),
        ("POST", "/blobs/uploads/"),
        ("GET", "/blobs/sha256:" + "0" * 64),
    ],
)
def test_invalid_repository_name(wharf: WharfServer, bad: str, method: str, suffix: str) -> None:
    before = upload_ids(wharf.root)
    path = f"/v2/{bad}{suffix}"
    headers = {"Content-Type": OCI_MANIFEST} if method == "PUT" else {}
    body = b"{}" if method == "PUT" else b""
    status, _, content = raw_request("127.0.0.1", wharf.port, method, path, headers, body)
    assert status == 400, (path, status, content[:200])
    codes = [e["code"] for e in json.loads(content)["errors"]]
    assert codes == ["NAME_INVALID"]
    assert upload_ids(wharf.root) == before  # no session was opened


def test_longest_valid_name_is_accepted(client: httpx.Client) -> None:
    name = ("a" * 50 + "/") * 4 + "b" * 51  # 255 characters
    assert len(name) == 255
    data = b"long name"
    digest = push_blob(client, name, data)
    assert client.get(f"/v2/{name}/blobs/{digest}").content == data
    too_long = name + "c"
    assert_error(client.get(f"/v2/{too_long}/blobs/{digest}"), 400, "NAME_INVALID")


def test_invalid_names_leave_the_registry_serving(client: httpx.Client) -> None:
    catalog = client.get("/v2/_catalog").json()["repositories"]
    assert not [n for n in catalog if n != n.lower() or ".." in n or "%" in n]
    assert_serving(client)


# -- interrupted clients and servers -------------------------------------------------

KILLED_CLIENT = r"""
import socket, sys, time
host, port, method, path, data_file = sys.argv[1:6]
data = open(data_file, "rb").read()
s = socket.create_connection((host, int(port)))
head = (
    f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    f"Content-Type: application/octet-stream\r\n"
    f"Content-Range: 0-{len(data) - 1}\r\nContent-Length: {len(data)}\r\n\r\n"
)
s.sendall(head.encode() + data[: len(data) // 2])
print("sent", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("mode", ["patch", "monolithic"])
def test_client_killed_mid_upload(
    client: httpx.Client, wharf: WharfServer, tmp_path: Path, mode: str
) -> None:
    name, data = unique_name("killed"), os.urandom(4 * 1024 * 1024)
    digest = digest_of(data)
    data_file = tmp_path / "blob"
    data_file.write_bytes(data)
    before = upload_ids(wharf.root)
    if mode == "patch":
        location = start_upload(client, name)
        method, path = "PATCH", location
    else:
        location = ""
        method, path = "POST", f"/v2/{name}/blobs/uploads/?digest={digest}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_CLIENT,
            "127.0.0.1",
            str(wharf.port),
            method,
            path,
            str(data_file),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"sent"
        time.sleep(0.3)  # let the server take in part of the body
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert_no_blob(client, wharf, name, digest)
    assert_serving(client)
    if mode == "patch":
        # resumable: the registry reports what it kept, the client sends the rest
        assert upload_offset(client, location) <= len(data) // 2
        r = finish_resumed(client, location, data)
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/{name}/blobs/{digest}").content == data
    else:
        # the single POST fails cleanly: its session is removed
        wait_for(lambda: upload_ids(wharf.root) <= before)
        assert_no_blob(client, wharf, name, digest)


def test_registry_restarted_mid_upload(make_wharf: Callable[..., WharfServer]) -> None:
    server = make_wharf()
    name, data = unique_name("restart"), os.urandom(3 * 1024 * 1024 + 5)
    digest = digest_of(data)
    cut = 1_234_567
    with server.client() as c:
        location = start_upload(c, name)
        r = c.patch(location, content=data[:cut], headers={"Content-Range": f"0-{cut - 1}"})
        assert r.status_code == 202
        assert r.headers["range"] == f"0-{cut - 1}"
        # a second session, whole but to be closed with a wrong digest after the restart
        other = start_upload(c, name)
        r = c.patch(other, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
        assert r.status_code == 202
    server.restart()
    with server.client() as c:
        # the running hash is rebuilt from storage, not trusted blindly
        wrong = digest_of(data[:-1])
        assert_error(c.put(other, params={"digest": wrong}), 400, "DIGEST_INVALID")
        assert_no_blob(c, server, name, wrong)
        assert_no_blob(c, server, name, digest)
        status = c.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{cut - 1}"
        r = c.patch(
            location,
            content=data[cut:],
            headers={"Content-Range": f"{cut}-{len(data) - 1}"},
        )
        assert r.status_code == 202
        r = c.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        got = c.get(f"/v2/{name}/blobs/{digest}")
        assert got.status_code == 200
        assert got.content == data
        assert digest_of(got.content) == digest
        assert_serving(c)
