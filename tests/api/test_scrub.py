"""The integrity scrub (issue #18): ``wharf scrub`` reads every stored blob and manifest
back, quarantines bad content (clients then get BLOB_UNKNOWN / MANIFEST_UNKNOWN, never
bad bytes) and a push of the same content heals it; runs resume from their cursor; the
API starts and follows runs.

``wharf scrub`` runs as a separate process against the config of a serving registry, as
an operator would run it. A registry per test: a scrub is registry-wide.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.digest import Digest
from storage.layout import blob_path
from storage.s3 import S3Driver
from tests.support.clients import Skopeo
from tests.support.gc import ROOT
from tests.support.oci import (
    OCI_MANIFEST,
    assert_error,
    blob_file,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    unique_name,
)
from tests.support.postgres import PostgresCluster
from tests.support.projects import as_user, basic_config
from tests.support.receiver import Receiver
from tests.support.s3 import RadosGateway, only_s3, s3_options, wharf_s3_config
from tests.support.server import WharfServer

ACCEPT = {"Accept": OCI_MANIFEST}


def scrub_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "registry.cli", "scrub", "-c", str(config), *args]


def run_scrub(config: Path, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    """``wharf scrub -c config --json ARGS``: exit status, result, stderr (progress)."""
    out = subprocess.run(
        scrub_command(config, "--json", *args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(out.stdout) if out.stdout else {}
    return out.returncode, result, out.stderr


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def api_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    errors = r.json()["errors"]
    assert [e["code"] for e in errors] == [code], errors
    found: dict[str, Any] = errors[0]
    return found


def make_server(
    tmp_path: Path, request: pytest.FixtureRequest, db: str, **extra: Any
) -> WharfServer:
    config: dict[str, Any] = {"http": {"workers": 1}, "scrub": {"rate": "0"}, **extra}
    if db == "postgres":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(), "poolsize": 4}
    return WharfServer(tmp_path / "wharf", config).start()


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WharfServer]:
    s = make_server(tmp_path, request, "sqlite")
    yield s
    s.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WharfServer]:
    s = make_server(tmp_path, request, request.param)
    yield s
    s.stop()


@pytest.fixture
def request_closes(request: pytest.FixtureRequest) -> Any:
    """Close a client at the end of the test."""

    def closes(client: httpx.Client) -> httpx.Client:
        request.addfinalizer(client.close)
        return client

    return closes


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


def test_a_flipped_byte_is_found_quarantined_and_healed_by_a_push(
    any_server: WharfServer, skopeo: Skopeo, tmp_path: Path, request_closes: Any
) -> None:
    server = any_server
    c = server.client()
    request_closes(c)
    name = unique_name("scrub")
    layers = [os.urandom(300_000), os.urandom(5000)]
    manifest_digest, _ = push_image(c, name, "v1", layers)
    bad = digest_of(layers[0])
    flip_byte(blob_file(server.root, bad), 123_456)

    status, result, progress = run_scrub(server.config_path)
    assert status == 1, (result, progress)
    assert result["state"] == "done"
    assert result["checked"] == result["total"] == 4  # config, 2 layers, the manifest
    assert result["bad"] == 1
    [found] = result["found"]
    assert found["digest"] == bad and found["reason"] == "corrupt" and found["kind"] == "blob"
    assert found["repositories"] == [name]
    assert "scrub run" in progress

    # clients are told it is unknown: no bad bytes
    assert_error(c.head(f"/v2/{name}/blobs/{bad}"), 404, "BLOB_UNKNOWN")
    assert_error(c.get(f"/v2/{name}/blobs/{bad}"), 404, "BLOB_UNKNOWN")
    other = unique_name("scrub")
    r = c.post(f"/v2/{other}/blobs/uploads/", params={"mount": bad, "from": name})
    assert r.status_code == 202, r.text  # no mount: the client is to upload it
    pulled = skopeo(
        "copy",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        f"docker://{server.host}/{name}:v1",
        f"dir:{tmp_path / 'pull1'}",
        check=False,
    )
    assert pulled.returncode != 0
    assert f"reading blob {bad}" in pulled.stderr and "404" in pulled.stderr, pulled.stderr
    assert not (tmp_path / "pull1" / bad.split(":")[1]).exists()  # no bad bytes written
    listed = c.get("/api/scrub/quarantine").json()
    assert [q["digest"] for q in listed["quarantined"]] == [bad]
    assert listed["quarantined"][0]["reason"] == "corrupt" and listed["total"] == 1
    # the other content is served as before
    assert c.get(f"/v2/{name}/manifests/v1", headers=ACCEPT).status_code == 200
    assert c.get(f"/v2/{name}/blobs/{digest_of(layers[1])}").content == layers[1]

    # the same image pushed again: good bytes, out of quarantine
    push_image(c, name, "v1", layers)
    r = c.get(f"/v2/{name}/blobs/{bad}")
    assert r.status_code == 200 and r.content == layers[0]
    assert c.get("/api/scrub/quarantine").json() == {"quarantined": [], "total": 0}
    skopeo(
        "copy",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        f"docker://{server.host}/{name}@{manifest_digest}",
        f"dir:{tmp_path / 'pull2'}",
    )
    assert (tmp_path / "pull2" / bad.split(":")[1]).read_bytes() == layers[0]
    status, result, _ = run_scrub(server.config_path, "-q")
    assert (status, result["bad"], result["found"]) == (0, 0, [])


def test_a_missing_blob_and_a_corrupt_manifest(
    tmp_path: Path, request: pytest.FixtureRequest, request_closes: Any
) -> None:
    receiver = Receiver(tmp_path / "receiver").start()
    request.addfinalizer(receiver.stop)
    endpoints = [{"name": "listener", "url": receiver.url, "timeout": "1s"}]
    server = make_server(tmp_path, request, "sqlite", notifications={"endpoints": endpoints})
    request.addfinalizer(server.stop)
    c = request_closes(server.client())
    name = unique_name("scrub")
    config, layer = b'{"os":"linux","architecture":"amd64"}', os.urandom(20_000)
    push_blob(c, name, config)
    push_blob(c, name, layer)
    body = json.dumps(image_manifest(config, [layer])).encode()
    assert put_manifest(c, name, "v1", body, OCI_MANIFEST).status_code == 201
    manifest = digest_of(body)
    blob_file(server.root, digest_of(layer)).unlink()
    flip_byte(blob_file(server.root, manifest), 5)

    status, result, _ = run_scrub(server.config_path, "-q")
    assert status == 1
    found = {f["digest"]: (f["kind"], f["reason"]) for f in result["found"]}
    assert found == {digest_of(layer): ("blob", "missing"), manifest: ("manifest", "corrupt")}
    # the CLI writes the events to the outbox; the registry delivers them
    events = receiver.wait_for(
        lambda e: len([x for x in e if x["action"] == "scrub_bad"]) >= 2, timeout=30
    )
    reported = {
        (e["target"]["digest"], e["target"]["reason"], e["target"]["repository"])
        for e in events
        if e["action"] == "scrub_bad"
    }
    assert reported == {(digest_of(layer), "missing", name), (manifest, "corrupt", name)}
    for ref in ("v1", manifest):
        assert_error(c.get(f"/v2/{name}/manifests/{ref}", headers=ACCEPT), 404, "MANIFEST_UNKNOWN")
        assert_error(c.head(f"/v2/{name}/manifests/{ref}", headers=ACCEPT), 404, "MANIFEST_UNKNOWN")
    assert_error(c.get(f"/v2/{name}/blobs/{digest_of(layer)}"), 404, "BLOB_UNKNOWN")
    # the manifest pushed again is refused while its layer is unknown, then accepted
    r = put_manifest(c, name, "v1", body, OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    # a chunked upload heals the blob as a monolithic one does
    location = start_upload(c, name)
    half = len(layer) // 2
    r = c.patch(location, content=layer[:half], headers={"Content-Range": f"0-{half - 1}"})
    assert r.status_code == 202, r.text
    r = c.put(r.headers["location"], params={"digest": digest_of(layer)}, content=layer[half:])
    assert r.status_code == 201, r.text
    assert put_manifest(c, name, "v1", body, OCI_MANIFEST).status_code == 201
    r = c.get(f"/v2/{name}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 200 and r.content == body
    assert blob_file(server.root, manifest).read_bytes() == body  # good bytes stored again
    assert c.get(f"/v2/{name}/blobs/{digest_of(layer)}").content == layer
    assert c.get("/api/scrub/quarantine").json()["total"] == 0
    status, result, _ = run_scrub(server.config_path, "-q")
    assert (status, result["bad"]) == (0, 0)


def test_a_stopped_run_resumes_from_its_cursor(server: WharfServer, request_closes: Any) -> None:
    c = request_closes(server.client())
    name = unique_name("scrub")
    blobs = [os.urandom(2000) for _ in range(20)]
    for blob in blobs:
        push_blob(c, name, blob)
    # 4000 bytes/s: two blobs a second; progress lines every 2 s
    proc = subprocess.Popen(
        scrub_command(server.config_path, "--json", "--rate", "4000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first progress save
        assert "running: checked" in line, line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, (out, err)
    first = json.loads(out)
    assert first["state"] == "stopped"
    assert 1 <= first["checked"] < 20 and first["total"] == 20
    run = c.get(f"/api/scrub/runs/{first['run_id']}").json()
    assert run["state"] == "stopped" and run["checked"] == first["checked"]
    cursor = run["cursor"]
    assert cursor == sorted(digest_of(b) for b in blobs)[first["checked"] - 1]

    status, second, _ = run_scrub(server.config_path, "--resume", "--rate", "0", "-q")
    assert status == 0, second
    assert second["run_id"] == first["run_id"] and second["state"] == "done"
    assert second["resumed_from"] == cursor
    assert second["session_checked"] == 20 - first["checked"]
    assert second["checked"] == 20 and second["bad"] == 0
    # --resume after a run that finished: a new run, from the start
    status, third, _ = run_scrub(server.config_path, "--resume", "-q")
    assert third["run_id"] != first["run_id"] and third["session_checked"] == 20


def test_the_api_starts_follows_and_stops_runs_and_reports_bad_content(
    tmp_path: Path, request: pytest.FixtureRequest, request_closes: Any
) -> None:
    receiver = Receiver(tmp_path / "receiver").start()
    request.addfinalizer(receiver.stop)
    endpoints = [{"name": "listener", "url": receiver.url, "timeout": "1s"}]
    server = make_server(tmp_path, request, "sqlite", notifications={"endpoints": endpoints})
    request.addfinalizer(server.stop)
    c = request_closes(server.client())
    name = unique_name("scrub")
    layers = [os.urandom(50_000), os.urandom(50_000)]
    push_image(c, name, "v1", layers)
    bad = digest_of(layers[1])
    flip_byte(blob_file(server.root, bad))

    # bad input: every field's problem, a 400
    r = c.post("/api/scrub/runs", json={"rate": "fast", "resume": "yes", "bogus": 1})
    problems = api_error(r, 400, "SCRUB_INVALID")["detail"]
    assert set(problems) == {"rate", "resume", "bogus"}
    api_error(c.post("/api/scrub/runs", content=b"[1"), 400, "SCRUB_INVALID")
    api_error(c.get("/api/scrub/runs/999"), 404, "SCRUB_RUN_UNKNOWN")

    r = c.post("/api/scrub/runs", json={"rate": "0"})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    run = wait_for_run(c, run_id)
    assert run["state"] == "done" and run["checked"] == run["total"] == 4 and run["bad"] == 1
    assert [q["digest"] for q in c.get("/api/scrub/quarantine").json()["quarantined"]] == [bad]
    assert_error(c.get(f"/v2/{name}/blobs/{bad}"), 404, "BLOB_UNKNOWN")
    metrics = httpx.get(server.metrics_url).text
    assert 'wharf_scrub_bad_total{reason="corrupt"} 1.0' in metrics
    events = receiver.wait_for(lambda e: any(x["action"] == "scrub_bad" for x in e), timeout=30)
    [event] = [e for e in events if e["action"] == "scrub_bad"]
    assert event["target"]["digest"] == bad and event["target"]["reason"] == "corrupt"
    assert event["target"]["repository"] == name

    # a slow run: a second start is refused, a stop ends it resumable
    r = c.post("/api/scrub/runs", json={"rate": "10kB"})
    assert r.status_code == 202, r.text
    slow = r.json()["id"]
    api_error(c.post("/api/scrub/runs", json={}), 409, "SCRUB_RUNNING")
    status, _, err = run_scrub(server.config_path)  # the CLI too waits its turn
    assert status == 3 and "a scrub is running" in err, err
    progress = c.get(f"/api/scrub/runs/{slow}").json()
    assert progress["state"] == "running" and progress["total"] == 4
    assert c.post(f"/api/scrub/runs/{slow}/stop").status_code == 202
    stopped = wait_for_run(c, slow)
    assert stopped["state"] == "stopped" and stopped["checked"] < 4
    r = c.post("/api/scrub/runs", json={"rate": "0", "resume": True})
    assert r.status_code == 202 and r.json()["id"] == slow
    assert wait_for_run(c, slow)["checked"] == 4
    runs = c.get("/api/scrub/runs").json()["runs"]
    assert [x["id"] for x in runs] == [slow, run_id]
    # the quarantined blob was found again, but reported once
    time.sleep(1)
    assert len([e for e in receiver.events() if e["action"] == "scrub_bad"]) == 1


def wait_for_run(c: httpx.Client, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = c.get(f"/api/scrub/runs/{run_id}").json()
        if run["state"] != "running":
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def test_on_s3_a_corrupt_object_is_found_and_healed(
    s3: RadosGateway, postgres: PostgresCluster, tmp_path: Path, request_closes: Any
) -> None:
    root = f"scrub-{uuid.uuid4().hex[:12]}"
    config = wharf_s3_config(s3, root, postgres.create_database(), redirect=False)
    config["scrub"] = {"rate": "0"}
    server = only_s3(WharfServer(tmp_path / "wharf", config)).start()
    try:
        c = request_closes(server.client())
        name = unique_name("scrub")
        layers = [os.urandom(6 * 1024 * 1024 + 17), os.urandom(1000)]  # over a 5 MiB part
        push_image(c, name, "v1", layers)
        bad, gone = digest_of(layers[0]), digest_of(layers[1])
        data = bytearray(layers[0])
        data[5 * 1024 * 1024 + 3] ^= 0x01
        driver = S3Driver(s3_options(s3, root))
        try:
            asyncio.run(driver.put_content(blob_path(Digest.parse(bad)), bytes(data)))
            asyncio.run(driver.delete(blob_path(Digest.parse(gone)).rsplit("/", 1)[0]))
        finally:
            driver.close()

        status, result, _ = run_scrub(server.config_path, "-q")
        assert status == 1 and result["checked"] == 4
        assert {(f["digest"], f["reason"]) for f in result["found"]} == {
            (bad, "corrupt"),
            (gone, "missing"),
        }
        assert_error(c.head(f"/v2/{name}/blobs/{bad}"), 404, "BLOB_UNKNOWN")
        assert_error(c.get(f"/v2/{name}/blobs/{gone}"), 404, "BLOB_UNKNOWN")
        push_image(c, name, "v1", layers)
        assert c.get(f"/v2/{name}/blobs/{bad}").content == layers[0]
        assert c.get(f"/v2/{name}/blobs/{gone}").content == layers[1]
        status, result, _ = run_scrub(server.config_path, "-q")
        assert (status, result["bad"]) == (0, 0)
    finally:
        server.stop()


def test_a_scheduled_run_checks_everything(
    tmp_path: Path, request: pytest.FixtureRequest, request_closes: Any
) -> None:
    server = make_server(tmp_path, request, "sqlite", scrub={"rate": "0", "schedule": "3s"})
    request.addfinalizer(server.stop)
    c = request_closes(server.client())
    name = unique_name("scrub")
    layers = [os.urandom(1000)]
    push_image(c, name, "v1", layers)
    bad = digest_of(layers[0])
    flip_byte(blob_file(server.root, bad))
    # intervals are at least a minute: the first run comes 1 s to a minute after startup
    deadline = time.monotonic() + 150
    while True:
        runs = [r for r in c.get("/api/scrub/runs").json()["runs"] if r["trigger"] == "schedule"]
        done = [r for r in runs if r["state"] == "done" and r["bad"]]
        if done:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    assert done[-1]["checked"] == done[-1]["total"] == 3
    assert_error(c.get(f"/v2/{name}/blobs/{bad}"), 404, "BLOB_UNKNOWN")


def test_only_administrators_use_the_api(tmp_path: Path, request_closes: Any) -> None:
    config = basic_config(tmp_path)
    server = WharfServer(tmp_path / "server", config).start()
    try:
        anonymous = request_closes(server.client())
        olga = request_closes(as_user(server, "olga"))
        admin = request_closes(as_user(server, "admin"))
        for path in ("/api/scrub/runs", "/api/scrub/quarantine"):
            api_error(anonymous.get(path), 401, "UNAUTHORIZED")
            api_error(olga.get(path), 403, "DENIED")
            assert admin.get(path).status_code == 200
        api_error(olga.post("/api/scrub/runs", json={}), 403, "DENIED")
        assert admin.post("/api/scrub/runs", json={}).status_code == 202
    finally:
        server.stop()


def test_a_mirror_fetches_quarantined_bytes_again(tmp_path: Path, request_closes: Any) -> None:
    upstream = WharfServer(tmp_path / "upstream", {"http": {"workers": 1}}).start()
    mirrors = [{"prefix": "hub", "remoteurl": upstream.url, "ttl": "1s"}]
    mirror = WharfServer(
        tmp_path / "mirror", {"http": {"workers": 1}, "mirrors": mirrors, "scrub": {"rate": "0"}}
    ).start()
    try:
        up = request_closes(upstream.client())
        m = request_closes(mirror.client())
        layer = os.urandom(40_000)
        push_image(up, "lib/app", "v1", [layer])
        bad = digest_of(layer)
        assert m.get(f"/v2/hub/lib/app/blobs/{bad}").content == layer  # cached
        deadline = time.monotonic() + 30
        while not blob_file(mirror.root, bad).exists():  # its fetch commits after the answer
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)  # and links it
        flip_byte(blob_file(mirror.root, bad))
        status, result, _ = run_scrub(mirror.config_path, "-q")
        assert status == 1 and [f["digest"] for f in result["found"]] == [bad]
        # the mirror fetches the bytes again from upstream instead of serving bad ones
        r = m.get(f"/v2/hub/lib/app/blobs/{bad}")
        assert r.status_code == 200 and r.content == layer
        deadline = time.monotonic() + 30
        while blob_file(mirror.root, bad).read_bytes() != layer:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert m.get("/api/scrub/quarantine").json()["total"] == 0
    finally:
        mirror.stop()
        upstream.stop()
