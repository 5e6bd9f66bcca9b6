"""Push workflow (distribution-spec v1.1, "Push"): blob uploads and manifest PUTs."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    blob_file,
    descriptor,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    unique_name,
    upload_ids,
)
from tests.support.server import WharfServer


def upload_id_of(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[1]


def assert_blob(client: httpx.Client, name: str, digest: str, data: bytes) -> None:
    r = client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["docker-content-digest"] == digest


def assert_created(r: httpx.Response, name: str, digest: str) -> None:
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["content-length"] == "0"


# -- blobs ---------------------------------------------------------------------------


def test_monolithic_single_post(client: httpx.Client) -> None:
    name, data = unique_name("push"), os.urandom(70_000)
    digest = digest_of(data)
    r = client.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_created(r, name, digest)
    r = client.get(r.headers["location"])  # the Location is a pullable blob URL
    assert r.status_code == 200 and r.content == data


def test_post_then_put(client: httpx.Client) -> None:
    name, data = unique_name("push"), os.urandom(3 * 1024 * 1024 + 17)
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["content-length"] == "0"
    location = r.headers["location"]
    assert location.startswith(f"/v2/{name}/blobs/uploads/")
    assert r.headers["docker-upload-uuid"] == upload_id_of(location)
    assert r.headers["range"] == "0-0"
    digest = digest_of(data)
    r = client.put(
        location,
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_created(r, name, digest)
    assert_blob(client, name, digest, data)


def test_chunked_upload_with_status_checks(client: httpx.Client) -> None:
    name = unique_name("push")
    data = os.urandom(2_500_000)
    chunks = [data[:1_000_000], data[1_000_000:1_000_001], data[1_000_001:2_000_000]]
    location = start_upload(client, name)
    uid = upload_id_of(location)
    offset = 0
    for chunk in chunks:
        r = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["range"] == f"0-{offset - 1}"
        assert r.headers["docker-upload-uuid"] == uid
        assert r.headers["content-length"] == "0"
        location = r.headers["location"]  # use the most recent Location
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{offset - 1}"
        assert status.headers["docker-upload-uuid"] == uid
        assert status.headers["location"] == location
        assert status.content == b""
    # the last chunk goes with the closing PUT
    last = data[offset:]
    r = client.put(
        location,
        params={"digest": digest_of(data)},
        content=last,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{len(data) - 1}",
        },
    )
    assert_created(r, name, digest_of(data))
    assert_blob(client, name, digest_of(data), data)
    assert client.get(location).status_code == 404  # the session is closed


def test_chunked_upload_closed_by_empty_put(client: httpx.Client) -> None:
    name, data = unique_name("push"), os.urandom(300_000)
    location = start_upload(client, name)
    for start in range(0, len(data), 100_000):
        chunk = data[start : start + 100_000]
        r = client.patch(
            location,
            content=chunk,
            headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"},
        )
        assert r.status_code == 202
        location = r.headers["location"]
    r = client.put(location, params={"digest": digest_of(data)}, headers={"Content-Length": "0"})
    assert_created(r, name, digest_of(data))
    assert_blob(client, name, digest_of(data), data)


def test_streamed_patch_without_content_range(client: httpx.Client) -> None:
    """A PATCH with no Content-Range (docker's streamed upload) appends at the end."""
    name, data = unique_name("push"), os.urandom(1_500_000)

    def body() -> Any:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    location = start_upload(client, name)
    r = client.patch(location, content=body())  # Transfer-Encoding: chunked
    assert r.status_code == 202
    assert r.headers["range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["location"], params={"digest": digest_of(data)})
    assert_created(r, name, digest_of(data))


def test_out_of_order_chunk_is_416(client: httpx.Client) -> None:
    name, data = unique_name("push"), b"0123456789abcdefghij"
    location = start_upload(client, name)
    r = client.patch(location, content=data[:10], headers={"Content-Range": "0-9"})
    assert r.status_code == 202
    # a gap, then a repeat of the first chunk
    for rng, chunk in (("15-19", data[15:]), ("0-9", data[:10]), ("5-14", data[5:15])):
        r = client.patch(location, content=chunk, headers={"Content-Range": rng})
        assert r.status_code == 416, (rng, r.text)
        assert r.headers["range"] == "0-9"
    status = client.get(location)
    assert status.status_code == 204 and status.headers["range"] == "0-9"
    # the client resumes where the registry says
    r = client.patch(location, content=data[10:], headers={"Content-Range": "10-19"})
    assert r.status_code == 202
    r = client.put(r.headers["location"], params={"digest": digest_of(data)})
    assert_created(r, name, digest_of(data))
    assert_blob(client, name, digest_of(data), data)


def test_cancel_upload(client: httpx.Client, wharf: WharfServer) -> None:
    name = unique_name("push")
    location = start_upload(client, name)
    r = client.patch(location, content=b"some bytes", headers={"Content-Range": "0-9"})
    assert r.status_code == 202
    uid = upload_id_of(location)
    assert uid in upload_ids(wharf.root)
    r = client.delete(location)
    assert r.status_code == 204
    assert uid not in upload_ids(wharf.root)  # intermediate data dumped
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(
            method, location, params={"digest": digest_of(b"some bytes")} if method == "PUT" else {}
        )
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.head(f"/v2/{name}/blobs/{digest_of(b'some bytes')}"), 404, "BLOB_UNKNOWN")


def test_cross_repository_mount(client: httpx.Client) -> None:
    source, target, data = unique_name("src"), unique_name("dst"), os.urandom(5000)
    digest = push_blob(client, source, data)
    assert client.head(f"/v2/{target}/blobs/{digest}").status_code == 404
    r = client.post(
        f"/v2/{target}/blobs/uploads/",
        params={"mount": digest, "from": source},
        headers={"Content-Length": "0"},
    )
    assert_created(r, target, digest)
    assert_blob(client, target, digest, data)
    assert_blob(client, source, digest, data)  # the source keeps it


@pytest.mark.parametrize("source", ["has-not", "Invalid/NAME", None])
def test_mount_that_cannot_be_done_starts_an_upload(
    client: httpx.Client, source: str | None
) -> None:
    target, data = unique_name("dst"), os.urandom(4000)
    digest = digest_of(data)
    if source == "has-not":
        source = unique_name("src")
        push_blob(client, source, b"something else")
    params = {"mount": digest} | ({"from": source} if source else {})
    r = client.post(f"/v2/{target}/blobs/uploads/", params=params)
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert location.startswith(f"/v2/{target}/blobs/uploads/")
    r = client.put(location, params={"digest": digest}, content=data)
    assert_created(r, target, digest)
    assert_blob(client, target, digest, data)


def test_sha512_blob_monolithic_and_chunked(client: httpx.Client) -> None:
    name, data = unique_name("sha512"), os.urandom(1_200_000)
    digest = digest_of(data, "sha512")
    assert len(digest) == len("sha512:") + 128
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert_created(r, name, digest)
    assert_blob(client, name, digest, data)
    # chunked, into another repository
    other = unique_name("sha512")
    location = start_upload(client, other)
    r = client.patch(location, content=data[:700_000], headers={"Content-Range": "0-699999"})
    assert r.status_code == 202
    r = client.put(
        r.headers["location"],
        params={"digest": digest},
        content=data[700_000:],
        headers={"Content-Range": f"700000-{len(data) - 1}"},
    )
    assert_created(r, other, digest)
    assert_blob(client, other, digest, data)
    r = client.get(f"/v2/{name}/blobs/{digest}", headers={"Range": "bytes=5-9"})
    assert r.status_code == 206 and r.content == data[5:10]


def test_sha512_digest_mismatch(client: httpx.Client) -> None:
    name = unique_name("sha512")
    wrong = digest_of(b"other", "sha512")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": wrong}, content=b"data")
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{name}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("same_repository", [True, False])
def test_concurrent_uploads_of_the_same_blob(wharf: WharfServer, same_repository: bool) -> None:
    name, data = unique_name("race"), os.urandom(3 * 1024 * 1024)
    digest = digest_of(data)
    barrier = threading.Barrier(2, timeout=30)
    results: list[httpx.Response] = []
    errors: list[BaseException] = []
    locations: list[str] = []

    def upload(repository: str) -> None:
        try:
            with wharf.client() as c:
                location = start_upload(c, repository)
                locations.append(location)
                half = len(data) // 2
                r = c.patch(
                    location, content=data[:half], headers={"Content-Range": f"0-{half - 1}"}
                )
                assert r.status_code == 202
                barrier.wait()  # both sessions hold half the blob; finish together
                results.append(
                    c.put(
                        r.headers["location"],
                        params={"digest": digest},
                        content=data[half:],
                        headers={"Content-Range": f"{half}-{len(data) - 1}"},
                    )
                )
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    other = name if same_repository else unique_name("race")
    threads = [threading.Thread(target=upload, args=(repo,)) for repo in (name, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert [r.status_code for r in results] == [201, 201], [r.text for r in results]
    with wharf.client() as c:
        assert_blob(c, name, digest, data)
        assert_blob(c, other, digest, data)
    # stored once, content-addressed; both sessions are gone
    stored = blob_file(wharf.root, digest)
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == ["data"]
    assert not {upload_id_of(loc) for loc in locations} & upload_ids(wharf.root)


def test_two_sessions_same_repository_same_blob(client: httpx.Client) -> None:
    name, data = unique_name("dup"), os.urandom(10_000)
    first, second = start_upload(client, name), start_upload(client, name)
    assert first != second
    for location in (first, second):
        r = client.put(location, params={"digest": digest_of(data)}, content=data)
        assert_created(r, name, digest_of(data))
    assert_blob(client, name, digest_of(data), data)


# -- manifests -----------------------------------------------------------------------


def assert_manifest_created(r: httpx.Response, name: str, body: bytes) -> str:
    digest = digest_of(body)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/manifests/{digest}"
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["content-length"] == "0"
    return digest


def assert_manifest(
    client: httpx.Client, name: str, ref: str, body: bytes, media_type: str
) -> None:
    r = client.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": media_type})
    assert r.status_code == 200, r.text
    assert r.content == body
    assert r.headers["content-type"] == media_type
    assert r.headers["docker-content-digest"] == digest_of(body)


def push_oci_image(client: httpx.Client, name: str, seed: str) -> tuple[bytes, str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer of {seed}".encode()
    for blob in (config, layer):
        push_blob(client, name, blob)
    body = json.dumps(image_manifest(config, [layer])).encode()
    return body, digest_of(body)


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_put_oci_image_manifest(client: httpx.Client, by: str) -> None:
    name = unique_name("man")
    body, digest = push_oci_image(client, name, by)
    ref = "v1.0" if by == "tag" else digest
    r = put_manifest(client, name, ref, body, OCI_MANIFEST)
    assert_manifest_created(r, name, body)
    assert_manifest(client, name, ref, body, OCI_MANIFEST)
    assert_manifest(client, name, digest, body, OCI_MANIFEST)
    tags = client.get(f"/v2/{name}/tags/list").json()["tags"]
    assert tags == (["v1.0"] if by == "tag" else [])


def test_manifest_bytes_are_kept_exactly(client: httpx.Client) -> None:
    name = unique_name("man")
    compact, _ = push_oci_image(client, name, "exact")
    pretty = json.dumps(json.loads(compact), indent=3, sort_keys=True).encode() + b"\n\n"
    r = put_manifest(client, name, "pretty", pretty, OCI_MANIFEST)
    assert_manifest_created(r, name, pretty)
    assert_manifest(client, name, "pretty", pretty, OCI_MANIFEST)


def test_put_manifest_by_sha512_digest(client: httpx.Client) -> None:
    name = unique_name("man")
    body, _ = push_oci_image(client, name, "sha512")
    digest = digest_of(body, "sha512")
    r = put_manifest(client, name, digest, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    r = client.get(f"/v2/{name}/manifests/{digest}")
    assert r.status_code == 200 and r.content == body


def test_retag_moves_the_tag(client: httpx.Client) -> None:
    name = unique_name("man")
    one, d1 = push_oci_image(client, name, "one")
    two, d2 = push_oci_image(client, name, "two")
    assert put_manifest(client, name, "latest", one, OCI_MANIFEST).status_code == 201
    assert put_manifest(client, name, "latest", two, OCI_MANIFEST).status_code == 201
    assert client.head(f"/v2/{name}/manifests/latest").headers["docker-content-digest"] == d2
    assert client.head(f"/v2/{name}/manifests/{d1}").status_code == 200  # still by digest


def test_put_oci_index(client: httpx.Client) -> None:
    name = unique_name("index")
    children = []
    for arch in ("amd64", "arm64"):
        body, digest = push_oci_image(client, name, arch)
        assert put_manifest(client, name, digest, body, OCI_MANIFEST).status_code == 201
        children.append(
            descriptor(OCI_MANIFEST, body, platform={"architecture": arch, "os": "linux"})
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    r = put_manifest(client, name, "multi", index, OCI_INDEX)
    digest = assert_manifest_created(r, name, index)
    assert_manifest(client, name, "multi", index, OCI_INDEX)
    assert_manifest(client, name, digest, index, OCI_INDEX)


def test_put_docker_schema2_and_manifest_list(client: httpx.Client) -> None:
    name = unique_name("docker")
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    layer = b"docker layer bytes"
    for blob in (config, layer):
        push_blob(client, name, blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, config),
            "layers": [descriptor(DOCKER_LAYER, layer)],
        },
        indent=3,
    ).encode()
    r = put_manifest(client, name, "schema2", manifest, DOCKER_MANIFEST)
    digest = assert_manifest_created(r, name, manifest)
    assert_manifest(client, name, "schema2", manifest, DOCKER_MANIFEST)
    manifest_list = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                descriptor(
                    DOCKER_MANIFEST, manifest, platform={"architecture": "amd64", "os": "linux"}
                )
            ],
        }
    ).encode()
    r = put_manifest(client, name, "list", manifest_list, DOCKER_MANIFEST_LIST)
    assert_manifest_created(r, name, manifest_list)
    assert_manifest(client, name, "list", manifest_list, DOCKER_MANIFEST_LIST)
    assert json.loads(manifest_list)["manifests"][0]["digest"] == digest


def artifact(subject: dict[str, Any], artifact_type: str, blob: bytes) -> dict[str, Any]:
    """An OCI 1.1 artifact: artifactType, the empty config, one layer, a subject."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/vnd.example.payload", blob)],
        "subject": subject,
        "annotations": {"org.example.kind": artifact_type},
    }


def test_put_artifact_with_subject(client: httpx.Client) -> None:
    name = unique_name("art")
    subject_digest, subject_body = push_image(client, name, "app", [b"app layer"])
    payload = b'{"sbom": true}'
    push_blob(client, name, EMPTY_JSON)
    push_blob(client, name, payload)
    body = json.dumps(
        artifact(descriptor(OCI_MANIFEST, subject_body), "application/vnd.example.sbom.v1", payload)
    ).encode()
    r = put_manifest(client, name, digest_of(body), body, OCI_MANIFEST)
    assert_manifest_created(r, name, body)
    assert r.headers["oci-subject"] == subject_digest
    assert_manifest(client, name, digest_of(body), body, OCI_MANIFEST)


def test_subject_not_pushed_yet_is_accepted(client: httpx.Client) -> None:
    name = unique_name("art")
    future = json.dumps(image_manifest(b"cfg-not-yet", [b"layer-not-yet"])).encode()
    payload = b"signature bytes"
    push_blob(client, name, EMPTY_JSON)
    push_blob(client, name, payload)
    body = json.dumps(
        artifact(descriptor(OCI_MANIFEST, future), "application/vnd.example.sig", payload)
    ).encode()
    r = put_manifest(client, name, digest_of(body), body, OCI_MANIFEST)
    assert_manifest_created(r, name, body)
    assert r.headers["oci-subject"] == digest_of(future)
    refs = client.get(f"/v2/{name}/referrers/{digest_of(future)}").json()["manifests"]
    assert [d["digest"] for d in refs] == [digest_of(body)]


def test_manifest_without_subject_has_no_oci_subject_header(client: httpx.Client) -> None:
    name = unique_name("man")
    body, _ = push_oci_image(client, name, "plain")
    r = put_manifest(client, name, "plain", body, OCI_MANIFEST)
    assert r.status_code == 201
    assert "oci-subject" not in r.headers


def test_index_with_subject_and_artifact_type(client: httpx.Client) -> None:
    name = unique_name("art")
    subject_digest, subject_body = push_image(client, name, "app", [b"idx subject layer"])
    child, child_digest = push_oci_image(client, name, "child")
    assert put_manifest(client, name, child_digest, child, OCI_MANIFEST).status_code == 201
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [descriptor(OCI_MANIFEST, child)],
            "subject": descriptor(OCI_MANIFEST, subject_body),
        }
    ).encode()
    r = put_manifest(client, name, digest_of(index), index, OCI_INDEX)
    assert_manifest_created(r, name, index)
    assert r.headers["oci-subject"] == subject_digest


def test_config_media_type_is_free_form(client: httpx.Client) -> None:
    name = unique_name("art")
    config = b'{"helm": "chart"}'
    layer = b"chart tarball"
    push_blob(client, name, config)
    push_blob(client, name, layer)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.cncf.helm.config.v1+json", config),
            "layers": [descriptor("application/vnd.cncf.helm.chart.content.v1.tar+gzip", layer)],
        }
    ).encode()
    r = put_manifest(client, name, "0.1.0", body, OCI_MANIFEST)
    assert_manifest_created(r, name, body)


def test_layers_of_an_oci_manifest_may_be_empty(client: httpx.Client) -> None:
    name = unique_name("art")
    push_blob(client, name, EMPTY_JSON)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.empty",
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [],
        }
    ).encode()
    assert_manifest_created(put_manifest(client, name, "empty", body, OCI_MANIFEST), name, body)


def test_manifest_content_type_with_parameters_is_accepted(client: httpx.Client) -> None:
    name = unique_name("man")
    body, _ = push_oci_image(client, name, "params")
    r = put_manifest(client, name, "p", body, f"{OCI_MANIFEST}; charset=utf-8")
    assert_manifest_created(r, name, body)
    assert_manifest(client, name, "p", body, OCI_MANIFEST)


def test_blob_upload_content_type_is_ignored(client: httpx.Client) -> None:
    name, data = unique_name("push"), b"typed"
    r = client.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest_of(data)},
        content=data,
        headers={"Content-Type": "text/plain"},
    )
    assert_created(r, name, digest_of(data))
