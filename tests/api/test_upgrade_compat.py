"""A data directory and database made by the previous release open unchanged.

tests/fixtures/previous-store.tar.gz holds the data directory (filesystem storage and
its SQLite database) a previous release left, and previous-store.json what that release
answered about it; tests/fixtures/make_previous_store.py made both (see the README
there). The current code serves the same store with the same configuration and must
answer the same: catalog, tags, every manifest and blob byte for byte, referrers,
search, robot accounts (which still log in), replication rules, events and GC runs; and
it goes on working on it (a push, a GC run)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.make_previous_store import (
    ADMIN,
    ANSWERS,
    ARCHIVE,
    OCI_MANIFEST,
    QUERIES,
    config_for,
)
from tests.support.oci import push_image
from tests.support.server import WharfServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Fields that say what happens now, not what is stored: the process sending for an
# endpoint (the current server's), a pause after a failure that may not have run out.
NOW_FIELDS = {"events/endpoints": ("sender", "paused_until")}


@pytest.fixture(scope="module")
def previous() -> dict[str, Any]:
    made: dict[str, Any] = json.loads((FIXTURES / ANSWERS).read_text())
    return made


def wharf(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def unpacked(workdir: Path, upgrade: bool = True) -> WharfServer:
    """The previous release's store under ``workdir``, its schema brought up to date by
    ``wharf db upgrade`` (unless not ``upgrade``), to be served by the current code."""
    workdir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(FIXTURES / ARCHIVE) as tar:
        tar.extractall(workdir, filter="data")
    server = WharfServer(workdir, config_for(workdir))
    if upgrade:
        server.config_path.write_text(yaml.safe_dump(server.config))
        done = wharf("db", "upgrade", "-c", str(server.config_path))
        assert done.returncode == 0, done.stderr
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = unpacked(tmp_path_factory.mktemp("compat")).start()
    yield server
    server.stop()


def test_the_previous_schema_is_refused_until_upgraded(tmp_path: Path) -> None:
    server = unpacked(tmp_path, upgrade=False)
    server.config_path.write_text(yaml.safe_dump(server.config))
    before = wharf("db", "current", "-c", str(server.config_path))
    assert before.returncode == 1 and "database revision: 0009 (code expects" in before.stdout
    with pytest.raises(RuntimeError, match="run `wharf db upgrade` first"):
        server.start(timeout=60)
    after = wharf("db", "current", "-c", str(server.config_path))
    assert after.stdout == before.stdout  # serve changed nothing
    assert wharf("db", "upgrade", "-c", str(server.config_path)).returncode == 0
    server.start()
    try:
        with server.client(auth=ADMIN) as c:
            assert c.get("/v2/_catalog").status_code == 200
    finally:
        server.stop()


def _now_fields_dropped(name: str, body: Any) -> Any:
    drop = NOW_FIELDS.get(name)
    if drop is None:
        return body
    return {
        key: [{k: v for k, v in item.items() if k not in drop} for item in items]
        for key, items in body.items()
    }


@pytest.mark.parametrize("name", [*QUERIES, "referrers"])
def test_answers_as_the_previous_release(
    server: WharfServer, previous: dict[str, Any], name: str
) -> None:
    before = previous["answers"][name]
    path, params = QUERIES.get(name, (f"/v2/compat/app/referrers/{previous['subject']}", {}))
    with server.client(auth=ADMIN) as c:
        r = c.get(path, params=params)
    assert r.status_code == before["status"], r.text
    assert _now_fields_dropped(name, r.json()) == _now_fields_dropped(name, before["body"])


def test_every_manifest_and_blob_pulls_byte_for_byte(
    server: WharfServer, previous: dict[str, Any]
) -> None:
    pulled = 0
    with server.client(auth=ADMIN) as c:
        for repo, manifests in previous["manifests"].items():
            for m in manifests:
                r = c.get(f"/v2/{repo}/manifests/{m['digest']}", headers={"Accept": m["mediaType"]})
                assert r.status_code == 200, r.text
                assert "sha256:" + hashlib.sha256(r.content).hexdigest() == m["digest"]
                assert len(r.content) == m["size"]
                assert r.headers["content-type"] == m["mediaType"]
                assert r.headers["docker-content-digest"] == m["digest"]
                pulled += 1
            for digest in previous["blobs"][repo]:
                r = c.get(f"/v2/{repo}/blobs/{digest}")
                assert r.status_code == 200, r.text
                assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest
                assert r.headers["docker-content-digest"] == digest
                pulled += 1
        for repo, tags in (("compat/app", ["v1", "latest"]), ("compat/multi", ["1.0"])):
            tagged = {m["digest"] for m in previous["manifests"][repo]}
            for tag in tags:
                r = c.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "*/*"})
                assert r.status_code == 200 and r.headers["docker-content-digest"] in tagged
    assert pulled == 5 + 11  # what the store holds: 5 manifests, 11 blobs


def test_the_robot_still_logs_in(server: WharfServer, previous: dict[str, Any]) -> None:
    robot = previous["robot"]
    with server.client() as c:
        assert c.get("/v2/", auth=(robot["name"], robot["secret"])).status_code == 200
        assert c.get("/v2/", auth=(robot["name"], "not-the-secret")).status_code == 401
        r = c.get("/v2/compat/app/tags/list", auth=(robot["name"], robot["secret"]))
        assert r.status_code == 200  # its groups are the policy's "builders"


def test_the_store_goes_on_working(tmp_path: Path, previous: dict[str, Any]) -> None:
    """A fresh copy: pushes land next to the old content, GC records its next run."""
    server = unpacked(tmp_path / "compat").start()
    try:
        with server.client(auth=ADMIN) as c:
            digest, _ = push_image(c, "compat/app", "v2", [b"a layer pushed after the upgrade"])
            tags = c.get("/v2/compat/app/tags/list").json()["tags"]
            assert tags == ["latest", "v1", "v2"]
            r = c.get(f"/v2/compat/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200
            gc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "registry.cli",
                    "gc",
                    "--dry-run",
                    "--quiet",
                    "--json",
                    str(server.config_path),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert gc.returncode == 0, gc.stderr
            runs = c.get("/api/gc/runs").json()["runs"]
            assert [run["id"] for run in runs] == [2, 1]  # newest first, the old one kept
            old = previous["answers"]["gc/runs"]["body"]["runs"]
            assert runs[1] == old[0]
    finally:
        server.stop()


def test_the_upgrade_puts_every_repository_in_a_project(tmp_path: Path) -> None:
    """Migration 0011: a project for each first path component (``compat``), and the
    default project ``library`` for the names without a slash. The fixture's store has
    only namespaced repositories, so a top-level one is added to its (0009) database
    before the upgrade, as a release before projects would have stored it."""
    workdir = tmp_path / "compat"
    workdir.mkdir()
    with tarfile.open(FIXTURES / ARCHIVE) as tar:
        tar.extractall(workdir, filter="data")
    database = workdir / "data" / "wharf.db"
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO repositories (name, created_at) VALUES ('nginx', '2026-12-01')")
    server = WharfServer(workdir, config_for(workdir))
    server.config_path.write_text(yaml.safe_dump(server.config))
    done = wharf("db", "upgrade", "-c", str(server.config_path))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(database) as db:
        made = db.execute(
            "SELECT name, public, owner, created_by FROM projects ORDER BY name"
        ).fetchall()
        members = db.execute("SELECT count(*) FROM project_members").fetchone()
    assert made == [("compat", 0, None, "migration"), ("library", 0, None, "migration")]
    assert members == (0,)
    shown = wharf("project", "show", "compat", "--json", "-c", str(server.config_path))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["members"] == []
    # what auth.policy gave before, it still gives: the admin pulls, nobody else is let in
    server.start()
    try:
        with server.client(auth=ADMIN) as c:
            assert c.get("/v2/compat/app/manifests/v1").status_code == 200
            names = [p["name"] for p in c.get("/api/projects").json()["projects"]]
            assert names == ["compat", "library"]
        with server.client() as anon:
            assert anon.get("/v2/compat/app/manifests/v1").status_code == 401
    finally:
        server.stop()
