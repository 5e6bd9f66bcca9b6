"""The integrity scrub (issue #18): ``wharf scrub`` reads every stored blob and manifest
back, quarantines bad content (clients then get BLOB_UNKNOWN / MANIFEST_UNKNOWN, never
bad bytes) and a push of the same content heals it; runs resume from their cursor; the
API starts and follows runs.

``wharf scrub`` runs as a separate process against the config of a serving registry, as
an operator would run it. A registry per test: a scrub is registry-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Skopeo
from tests.support.gc import ROOT
from tests.support.oci import (
    OCI_MANIFEST,
    assert_error,
    blob_file,
    digest_of,
    push_image,
    unique_name,
)
from tests.support.postgres import PostgresCluster
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
    assert out.stdout, (out.returncode, out.stderr)
    result: dict[str, Any] = json.loads(out.stdout)
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


def make_server(tmp_path: Path, request: pytest.FixtureRequest, db: str) -> WharfServer:
    config: dict[str, Any] = {"http": {"workers": 1}, "scrub": {"rate": "0"}}
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
