"""Garbage collection while pushes go on, and GC killed mid-run (issue #7).

- stress: for a bounded time, threads push images sharing layers (HEAD first and skip
  what exists, monolithic and chunked uploads, cross-repository mounts), delete tags and
  manifests and push again, while GC runs in a loop (API, and the CLI beside it); then
  every image that should exist is pulled and every digest checked, and after a last run
  nothing unreferenced is left.
- crash: ``wharf gc`` killed with SIGKILL at random points of its sweep; after each kill
  every manifest row still has its bytes and its blobs; a last run completes and leaves
  only what tags reach.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gc import ROOT, pull, run_gc, sha256, stored_files
from tests.support.oci import OCI_MANIFEST, image_manifest, push_blob, put_manifest
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer

pytestmark = pytest.mark.slow

DURATION = float(os.environ.get("WHARF_GC_STRESS_SECONDS", "60"))
GRACE = 5.0
PIN_REFRESH = 1.0
REPOS = ["stress/a", "stress/b", "stress/c"]
GC_CMD = [sys.executable, "-m", "registry.cli", "gc", "-q", "--json"]
SHARED = [f"shared layer {i} ".encode() * (200 + 150 * i) for i in range(8)]


@dataclass
class Pusher:
    """One thread's images: it alone writes its tags, so it knows what they point at."""

    n: int
    rng: random.Random
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    images: list[tuple[bytes, list[bytes]]] = field(default_factory=list)
    pushes: int = 0
    deletes: int = 0
    refused: list[str] = field(default_factory=list)  # failures GC must not cause


def _upload(c: httpx.Client, rng: random.Random, repo: str, data: bytes) -> None:
    digest = sha256(data)
    if rng.random() < 0.3:  # mount from another repository, fall back to an upload
        source = rng.choice([r for r in REPOS if r != repo])
        r = c.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source})
        if r.status_code == 201:
            return
        assert r.status_code == 202, r.text
        r = c.put(r.headers["location"], params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        return
    if rng.random() < 0.5:
        push_blob(c, repo, data)
        return
    r = c.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    half = len(data) // 2
    r = c.patch(
        r.headers["location"],
        content=data[:half],
        headers={"Content-Range": f"0-{half - 1}", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text
    r = c.put(r.headers["location"], params={"digest": digest}, content=data[half:])
    assert r.status_code == 201, r.text


def _push(
    c: httpx.Client, p: Pusher, repo: str, tag: str, config: bytes, layers: list[bytes]
) -> None:
    """Push like a client: HEAD each blob, upload only the missing ones, PUT the manifest."""
    checked = time.monotonic()
    for data in [config, *layers]:
        r = c.head(f"/v2/{repo}/blobs/{sha256(data)}")
        if r.status_code == 404:
            _upload(c, p.rng, repo, data)
        else:
            assert r.status_code == 200, r.text
    body = json.dumps(image_manifest(config, layers)).encode()
    r = put_manifest(c, repo, tag, body, OCI_MANIFEST)
    if r.status_code == 201:
        p.tags[(repo, tag)] = sha256(body)
        p.pushes += 1
        return
    # Only a client slower than the grace period between its HEADs and its PUT may be told
    # a blob it saw is gone; anything else is a GC bug.
    elapsed = time.monotonic() - checked
    if not (r.status_code == 400 and elapsed > GRACE - PIN_REFRESH):
        p.refused.append(f"{repo}:{tag} {r.status_code} after {elapsed:.1f}s: {r.text[:300]}")


def _pusher(server: WharfServer, p: Pusher, deadline: float, errors: list[str]) -> None:
    try:
        with server.client() as c:
            while time.monotonic() < deadline:
                action = p.rng.random()
                repo = p.rng.choice(REPOS)
                if action < 0.55 or not p.tags:  # a new image
                    k = len(p.images)
                    config = json.dumps({"os": "linux", "pusher": p.n, "image": k}).encode()
                    layers = p.rng.sample(SHARED, p.rng.randint(1, 3))
                    layers.append(f"own layer {p.n}-{k} ".encode() * p.rng.randint(5, 300))
                    p.images.append((config, layers))
                    _push(c, p, repo, f"t{p.n}-{p.rng.randint(0, 5)}", config, layers)
                elif action < 0.75:  # an old image again (its blobs may be gone by now)
                    config, layers = p.rng.choice(p.images)
                    _push(c, p, repo, f"t{p.n}-{p.rng.randint(0, 5)}", config, layers)
                elif action < 0.92:  # delete a tag
                    (repo, tag) = p.rng.choice(sorted(p.tags))
                    r = c.delete(f"/v2/{repo}/manifests/{tag}")
                    assert r.status_code == 202, r.text
                    del p.tags[(repo, tag)]
                    p.deletes += 1
                else:  # delete a manifest with every tag on it
                    (repo, tag) = p.rng.choice(sorted(p.tags))
                    digest = p.tags[(repo, tag)]
                    r = c.delete(f"/v2/{repo}/manifests/{digest}")
                    assert r.status_code == 202, r.text
                    for key in [k for k, v in p.tags.items() if k[0] == repo and v == digest]:
                        del p.tags[key]
                    p.deletes += 1
    except Exception as e:  # reported by the test, not lost in a thread
        errors.append(f"pusher {p.n}: {type(e).__name__}: {e}")


def _gc_loop(
    server: WharfServer, deadline: float, runs: list[dict[str, Any]], errors: list[str]
) -> None:
    try:
        with server.client() as c:
            while time.monotonic() < deadline:
                r = c.post("/api/gc/runs", json={"grace": f"{GRACE}s", "delete_untagged": True})
                if r.status_code == 409:  # the CLI run holds the lease
                    time.sleep(0.2)
                    continue
                assert r.status_code == 202, r.text
                run_id = r.json()["id"]
                while True:
                    run = c.get(f"/api/gc/runs/{run_id}").json()
                    if run["state"] != "running":
                        break
                    time.sleep(0.1)
                assert run["state"] == "done", run
                runs.append(run)
                time.sleep(random.uniform(0, 1.5))  # room for the CLI to take the lease
    except Exception as e:
        errors.append(f"gc loop: {type(e).__name__}: {e}")


def _reachable(c: httpx.Client, expected: dict[tuple[str, str], str]) -> set[str]:
    found: set[str] = set()
    for (repo, tag), digest in sorted(expected.items()):
        pulled = pull(c, repo, tag)
        assert pulled[0] == digest, (repo, tag)
        found |= set(pulled)
    return found


Query = Callable[[str], list[str]]


def sqlite_query(root: Path) -> Query:
    def query(sql: str) -> list[str]:
        db = sqlite3.connect(root / "wharf.db")
        try:
            return [str(row[0]) for row in db.execute(sql)]
        finally:
            db.close()

    return query


def _psql_query(postgres: PostgresCluster, database: str) -> Query:
    def query(sql: str) -> list[str]:
        out = postgres.psql(sql, database)
        return out.splitlines() if out else []

    return query


def _rows_have_files(root: Path, query: Query) -> None:
    """Every manifest row has its bytes and every blob row its file (rows before files)."""
    files = stored_files(root)
    rows = query("SELECT DISTINCT digest FROM manifests")
    rows += query("SELECT DISTINCT digest FROM manifest_blobs")
    rows += query("SELECT digest FROM blobs")
    missing = [d for d in rows if d not in files]
    assert not missing, f"rows without bytes: {missing[:10]} ({len(missing)})"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_gc_loop_during_concurrent_pushes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config: dict[str, Any] = {"http": {"workers": 1}, "gc": {"pinrefresh": f"{PIN_REFRESH}s"}}
    duration = DURATION
    query: Query
    if backend == "postgres":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        database = f"gc_stress_{os.getpid()}"
        config["database"] = {"url": postgres.create_database(database), "poolsize": 8}
        duration = DURATION / 2
        query = _psql_query(postgres, database)
    server = WharfServer(tmp_path / "wharf", config).start()
    if backend == "sqlite":
        query = sqlite_query(server.root)
    try:
        deadline = time.monotonic() + duration
        pushers = [Pusher(n, random.Random(1000 + n)) for n in range(4)]
        errors: list[str] = []
        runs: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=_pusher, args=(server, p, deadline, errors)) for p in pushers
        ]
        threads.append(threading.Thread(target=_gc_loop, args=(server, deadline, runs, errors)))
        for t in threads:
            t.start()
        # the CLI beside the API loop, against the same database and storage
        time.sleep(duration / 3)
        cli_runs = 0
        while time.monotonic() < deadline - 5:
            out = subprocess.run(
                [
                    *GC_CMD,
                    "-c",
                    str(server.config_path),
                    "--grace",
                    f"{GRACE}s",
                    "--delete-untagged",
                    "--wait",
                    "20s",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert out.returncode == 0, out.stderr
            cli_runs += 1
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        refused = [r for p in pushers for r in p.refused]
        assert not refused, refused
        done = [r for r in runs if not r["dry_run"]]
        deleted = sum(r["result"]["blobs_deleted"] for r in done)
        print(
            f"\n{sum(p.pushes for p in pushers)} pushes, {sum(p.deletes for p in pushers)} "
            f"deletes, {len(done)} API runs + {cli_runs} CLI runs deleted {deleted} blobs, "
            f"{sum(r['result']['manifests_deleted'] for r in done)} manifests; spared on the "
            f"second look: {sum(r['result']['blobs_spared'] for r in done)} blobs, "
            f"{sum(r['result']['manifests_spared'] for r in done)} manifests"
        )
        assert len(done) >= 3 and cli_runs >= 1 and deleted > 0

        expected = {k: v for p in pushers for k, v in p.tags.items()}
        with server.client() as c:
            reachable = _reachable(c, expected)  # zero missing
            _rows_have_files(server.root, query)
            # everything unreferenced before the last run is gone after it
            last = run_gc(server.config_path, "--grace", "0s", "--delete-untagged")
            assert last["manifests_spared"] == last["blobs_spared"] == 0
            assert _reachable(c, expected) == reachable
            assert set(stored_files(server.root)) == reachable
            usage = c.get("/api/gc/usage").json()["registry"]
            assert usage["reclaimable_blobs"] == usage["reclaimable_manifests"] == 0
        _rows_have_files(server.root, query)
    finally:
        server.stop()


def _populate(c: httpx.Client) -> dict[tuple[str, str], str]:
    """Images sharing layers; half their tags deleted; hundreds of unreferenced blobs."""
    rng = random.Random(7)
    expected: dict[tuple[str, str], str] = {}
    for i in range(40):
        repo = REPOS[i % len(REPOS)]
        config = json.dumps({"os": "linux", "crash": i}).encode()
        layers = [*rng.sample(SHARED, 2), f"crash layer {i} ".encode() * 50]
        for data in [config, *layers]:
            push_blob(c, repo, data)
        body = json.dumps(image_manifest(config, layers)).encode()
        assert put_manifest(c, repo, f"v{i}", body, OCI_MANIFEST).status_code == 201
        if i % 2:
            assert c.delete(f"/v2/{repo}/manifests/v{i}").status_code == 202
        else:
            expected[(repo, f"v{i}")] = sha256(body)
    for i in range(600):
        push_blob(c, REPOS[i % len(REPOS)], f"unreferenced blob {i}".encode())
    return expected


def _kill_during_run(config: Path, root: Path, rng: random.Random) -> bool:
    """Start ``wharf gc``, SIGKILL it a random moment after its sweep began deleting blob
    rows (so the kill lands mid-sweep however fast the sweep is); True if it was killed
    before finishing."""
    db = sqlite3.connect(root / "wharf.db")
    try:
        before = db.execute("SELECT COALESCE(MAX(id), 0) FROM gc_runs").fetchone()[0]
        blobs_before = db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
        proc = subprocess.Popen(
            [*GC_CMD, "-c", str(config), "--grace", "0s", "--delete-untagged", "--batch", "7"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while db.execute("SELECT COALESCE(MAX(id), 0) FROM gc_runs").fetchone()[0] == before:
            assert proc.poll() is None and time.monotonic() < deadline, "gc did not start"
            time.sleep(0.01)
        while db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == blobs_before:
            if proc.poll() is not None or time.monotonic() > deadline:
                break  # finished (nothing left to delete) or stuck: judged below
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.1))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        return not finished
    finally:
        db.close()


def test_gc_killed_mid_sweep_resumes(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "wharf", {"http": {"workers": 1}}).start()
    query = sqlite_query(server.root)
    try:
        with server.client() as c:
            expected = _populate(c)
            rng = random.Random(11)
            kills = 0
            for _ in range(4):
                kills += _kill_during_run(server.config_path, server.root, rng)
                _rows_have_files(server.root, query)  # no manifest points at missing bytes
                reachable = _reachable(c, expected)
            assert kills >= 2
            # the next run adopts what the killed ones left and finishes the job
            last = run_gc(server.config_path, "--grace", "0s", "--delete-untagged")
            assert _reachable(c, expected) == reachable
            assert set(stored_files(server.root)) == reachable
            _rows_have_files(server.root, query)
            db = sqlite3.connect(server.root / "wharf.db")
            try:
                assert db.execute("SELECT COUNT(*) FROM gc_doomed").fetchone()[0] == 0
                states = [s for (s,) in db.execute("SELECT state FROM gc_runs ORDER BY id")]
            finally:
                db.close()
            assert states[-1] == "done" and "interrupted" in states, states
            print(f"\n{kills} kills; last run: {last}")
    finally:
        server.stop()
