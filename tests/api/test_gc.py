"""Garbage collection (issue #7): what goes, what stays, dry runs, pins, the API.

One registry for the module (GC is registry-wide); ``wharf gc`` runs as a separate
process against its config while it serves, as an operator would run it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gc import pull, run_gc, stored_files
from tests.support.oci import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    descriptor,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    upload_ids,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer

SIGNATURE = "application/vnd.example.signature.v1"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    config: dict[str, Any] = {
        "http": {"workers": 1},
        # pins on every HEAD (the default writes at most every 10 s)
        "gc": {"pinrefresh": "0s"},
        "storage": {"maintenance": {"uploadpurging": {"age": "10m", "interval": "24h"}}},
    }
    if request.param == "postgres":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(), "poolsize": 4}
    s = WharfServer(tmp_path_factory.mktemp("gc"), config).start()
    yield s
    s.stop()


@pytest.fixture
def c(server: WharfServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def push_child(c: httpx.Client, repo: str, layers: list[bytes], arch: str) -> tuple[str, bytes]:
    config = json.dumps({"architecture": arch, "os": "linux", "layers": len(layers)}).encode()
    return _push_by_digest(c, repo, layers, config)


def _push_by_digest(
    c: httpx.Client, repo: str, layers: list[bytes], config: bytes
) -> tuple[str, bytes]:
    for blob in [config, *layers]:
        push_blob(c, repo, blob)
    body = json.dumps(image_manifest(config, layers)).encode()
    digest = digest_of(body)
    r = put_manifest(c, repo, digest, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    return digest, body


def push_index(c: httpx.Client, repo: str, tag: str, children: list[bytes]) -> tuple[str, bytes]:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, body) for body in children],
    }
    body = json.dumps(index).encode()
    r = put_manifest(c, repo, tag, body, OCI_INDEX)
    assert r.status_code == 201, r.text
    return digest_of(body), body


def push_signature(
    c: httpx.Client, repo: str, subject_body: bytes, subject_type: str, payload: bytes
) -> tuple[str, str]:
    """An OCI 1.1 artifact with a subject; returns (manifest digest, payload digest)."""
    push_blob(c, repo, EMPTY_JSON)
    layer = push_blob(c, repo, payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/octet-stream", payload)],
        "subject": descriptor(subject_type, subject_body),
    }
    body = json.dumps(manifest).encode()
    digest = digest_of(body)
    r = put_manifest(c, repo, digest, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    return digest, layer


def gone(c: httpx.Client, repo: str, digest: str, manifest: bool = False) -> bool:
    kind = "manifests" if manifest else "blobs"
    return c.get(f"/v2/{repo}/{kind}/{digest}").status_code == 404


def test_gc_keeps_what_tags_reach_and_collects_the_rest(
    server: WharfServer, c: httpx.Client
) -> None:
    repo, b_repo, c_repo = "gc/multi", "gc/other-b", "gc/other-c"
    shared = b"layer shared by everything " * 10
    amd, amd_body = push_child(c, repo, [shared, b"amd64 only"], "amd64")
    arm, arm_body = push_child(c, repo, [shared, b"arm64 only"], "arm64")
    index, index_body = push_index(c, repo, "latest", [amd_body, arm_body])
    sig_index, _ = push_signature(c, repo, index_body, OCI_INDEX, b"sig of index")
    sig_child, _ = push_signature(c, repo, amd_body, OCI_MANIFEST, b"sig of amd64 child")
    # an image whose tag goes: untagged, it stays unless --delete-untagged
    old, _ = push_image(c, repo, "old", [shared, b"old only layer"])
    assert c.delete(f"/v2/{repo}/manifests/old").status_code == 202
    # an image deleted with its signature left behind: the signature is garbage
    doomed, doomed_body = push_image(c, repo, "doomed", [b"doomed layer"])
    orphan_sig, orphan_sig_layer = push_signature(
        c, repo, doomed_body, OCI_MANIFEST, b"orphaned signature payload"
    )
    assert c.delete(f"/v2/{repo}/manifests/{doomed}").status_code == 202
    # a blob no manifest uses, and the bytes of a manifest refused for a missing blob
    lonely = push_blob(c, repo, b"a blob nobody references")
    refused_body = json.dumps(image_manifest(b"{}", [b"never pushed layer"])).encode()
    assert_error(
        put_manifest(c, repo, "refused", refused_body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    # the same child in two repositories: tagged index in B, untagged and alone in C
    x, x_body = push_child(c, c_repo, [b"layer of x"], "s390x")
    push_child(c, b_repo, [b"layer of x"], "s390x")
    b_index, _ = push_index(c, b_repo, "v1", [x_body])
    # an abandoned upload (started an hour ago), and one going on
    abandoned = start_upload(c, repo).rsplit("/", 1)[1]
    info = server.root / "uploads" / abandoned / "info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "started": time.time() - 3600}))
    active = start_upload(c, repo).rsplit("/", 1)[1]
    files_before = stored_files(server.root)
    assert digest_of(refused_body) in files_before

    def check_live() -> None:
        pulled = set(pull(c, repo, "latest"))
        assert {index, amd, arm, digest_of(shared)} <= pulled
        pull(c, repo, sig_index)
        pull(c, repo, sig_child)
        assert {b_index, x, digest_of(b"layer of x")} <= set(pull(c, b_repo, "v1"))
        referrers = c.get(f"/v2/{repo}/referrers/{index}").json()["manifests"]
        assert [m["digest"] for m in referrers] == [sig_index]

    # 1. a dry run reports, and changes nothing
    dry = run_gc(server.config_path, "--dry-run", "--grace", "0s", "--delete-untagged")
    assert dry["dry_run"] is True
    assert set(dry["would_delete"]["manifests"]) == {old, orphan_sig, x}
    assert lonely in dry["would_delete"]["blobs"]
    assert digest_of(b"old only layer") in dry["would_delete"]["blobs"]
    assert digest_of(refused_body) in dry["would_delete"]["orphan_files"]
    assert dry["bytes_reclaimed"] > 0
    assert dry["uploads_purged"] == 1, (upload_ids(server.root), abandoned, active)
    assert stored_files(server.root) == files_before
    assert upload_ids(server.root) == {abandoned, active}
    check_live()
    pull(c, repo, old)
    pull(c, c_repo, x)

    # 2. without --delete-untagged: the orphaned signature and unreferenced bytes go
    first = run_gc(server.config_path, "--grace", "0s")
    assert first["manifests_deleted"] == 1  # the orphaned signature
    assert gone(c, repo, orphan_sig, manifest=True)
    assert gone(c, repo, orphan_sig_layer) and gone(c, repo, lonely)
    assert gone(c, repo, digest_of(b"doomed layer"))
    files = stored_files(server.root)
    for digest in (orphan_sig, orphan_sig_layer, lonely, digest_of(refused_body), doomed):
        assert digest not in files, digest
    assert upload_ids(server.root) == {active}  # the abandoned upload only
    pull(c, repo, old)  # untagged images stay
    pull(c, c_repo, x)
    check_live()
    assert first["bytes_reclaimed"] == sum(v for k, v in files_before.items() if k not in files)

    # 3. --delete-untagged: untagged images go, but never a child of a tagged index
    second = run_gc(server.config_path, "--grace", "0s", "--delete-untagged")
    assert second["manifests_deleted"] == 2  # old in gc/multi, x in gc/other-c
    assert gone(c, repo, old, manifest=True) and gone(c, repo, digest_of(b"old only layer"))
    assert gone(c, c_repo, x, manifest=True)
    assert gone(c, c_repo, digest_of(b"layer of x"))  # its link in C
    check_live()
    files = stored_files(server.root)
    assert x in files and digest_of(b"layer of x") in files  # B still holds them
    assert digest_of(b"old only layer") not in files and old not in files

    # 4. nothing left: a third run deletes nothing
    third = run_gc(server.config_path, "--grace", "0s", "--delete-untagged")
    assert third["manifests_deleted"] == third["blobs_deleted"] == 0
    assert third["orphan_files_deleted"] == third["links_deleted"] == 0
    check_live()


def test_recent_pushes_and_heads_survive_the_grace_period(
    server: WharfServer, c: httpx.Client
) -> None:
    repo = "gc/grace"
    config = json.dumps({"architecture": "amd64", "os": "linux", "grace": 1}).encode()
    layer, other = b"HEADed before the manifest", b"pushed and forgotten"
    for blob in (config, layer, other):
        push_blob(c, repo, blob)
    time.sleep(3)
    # a client checks the blobs exist (and so skips uploading them)...
    for blob in (config, layer):
        assert c.head(f"/v2/{repo}/blobs/{digest_of(blob)}").status_code == 200
    r = c.post("/api/gc/runs", json={"grace": "2s"})  # in the server: starts at once
    assert r.status_code == 202, r.text
    result = _wait_run(c, r.json()["id"])["result"]
    assert result["blobs_deleted"] >= 1
    assert gone(c, repo, digest_of(other))
    # ...and pushes the manifest after GC ran: the HEADed blobs were kept for it
    body = json.dumps(image_manifest(config, [layer])).encode()
    assert put_manifest(c, repo, "v1", body, OCI_MANIFEST).status_code == 201
    pull(c, repo, "v1")
    # anything pushed within the grace period stays, referenced or not
    fresh = push_blob(c, repo, b"pushed just now")
    run_gc(server.config_path, "--grace", "1h")
    assert not gone(c, repo, fresh)


def _wait_run(c: httpx.Client, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = c.get(f"/api/gc/runs/{run_id}")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()
        if run["state"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_api_runs_and_usage(server: WharfServer, c: httpx.Client) -> None:
    shared = b"usage: shared layer " * 50
    own_a, own_b = b"usage: only in a " * 20, b"usage: only in b " * 30
    config = json.dumps({"architecture": "amd64", "os": "linux", "usage": 1}).encode()
    a_digest, a_body = push_image(c, "usage/a", "v1", [shared, own_a], config)
    b_digest, b_body = push_image(c, "usage/b", "v1", [shared, own_b], config)
    garbage = push_blob(c, "usage/a", b"usage: garbage " * 100)
    time.sleep(2.1)  # older than the grace given below

    r = c.post("/api/gc/runs", json={"dry_run": True, "grace": "2s"})
    assert r.status_code == 202, r.text
    run = _wait_run(c, r.json()["id"])
    assert run["state"] == "done" and run["dry_run"] is True
    assert garbage in run["result"]["would_delete"]["blobs"]
    assert garbage in stored_files(server.root)  # (a GET would pin it: GC spares it then)
    listed = c.get("/api/gc/runs", params={"n": 5}).json()["runs"]
    assert listed[0]["id"] == run["id"]

    usage = c.get("/api/gc/usage").json()
    repos = {u["name"]: u for u in usage["repositories"]}
    logical_a = len(a_body) + len(config) + len(shared) + len(own_a)
    assert repos["usage/a"]["logical_bytes"] == logical_a
    # shared layer and config are held by both: only the manifest and own layer count
    assert repos["usage/a"]["exclusive_bytes"] == len(a_body) + len(own_a)
    assert repos["usage/b"]["exclusive_bytes"] == len(b_body) + len(own_b)
    registry = usage["registry"]
    assert registry["physical_bytes"] >= logical_a + len(b_body) + len(own_b)
    assert registry["reclaimable_bytes"] >= 0

    r = c.post("/api/gc/runs", json={"grace": "2s"})
    assert r.status_code == 202, r.text
    run = _wait_run(c, r.json()["id"])
    assert run["state"] == "done", run
    assert run["result"]["blobs_deleted"] >= 1 and run["result"]["bytes_reclaimed"] >= 1500
    assert gone(c, "usage/a", garbage)
    pull(c, "usage/a", a_digest)
    pull(c, "usage/b", b_digest)

    assert_error_body(c.post("/api/gc/runs", json={"grace": "soon"}), 400, "INVALID_PARAMETER")
    assert_error_body(c.post("/api/gc/runs", json={"dryrun": True}), 400, "INVALID_PARAMETER")
    assert_error_body(c.post("/api/gc/runs", content=b"[1]"), 400, "INVALID_PARAMETER")
    assert_error_body(c.get("/api/gc/runs/999999"), 404, "GC_RUN_UNKNOWN")
    assert c.delete("/api/gc/runs").status_code == 405
    metrics = c.get("/metrics").text
    assert "wharf_gc_runs_total" in metrics and "wharf_gc_reclaimed_bytes_total" in metrics


def assert_error_body(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["errors"][0]["code"] == code


def test_a_second_run_waits_for_the_lease(server: WharfServer, c: httpx.Client) -> None:
    """While one run holds the lease, another is refused (API: 409), but not a dry run."""
    import sqlite3

    if "database" in server.config:
        pytest.skip("sets the lease with sqlite3")

    db = sqlite3.connect(server.root / "wharf.db")
    try:
        db.execute(
            "INSERT INTO gc_lease (name, holder, run_id, expires_at)"
            " VALUES ('gc', 'other', NULL, ?) ON CONFLICT (name)"
            " DO UPDATE SET holder = 'other', expires_at = excluded.expires_at",
            (time.time() + 60,),
        )
        db.commit()
        assert_error_body(c.post("/api/gc/runs", json={}), 409, "GC_RUNNING")
        # a dry run needs no lease
        assert c.post("/api/gc/runs", json={"dry_run": True}).status_code == 202
    finally:
        db.execute("UPDATE gc_lease SET expires_at = 0")
        db.commit()
        db.close()
