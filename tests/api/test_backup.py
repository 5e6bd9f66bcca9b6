"""``wharf backup`` of a busy registry and ``wharf restore`` into a fresh one: every image
the backup holds pulls whole, a GC run loses nothing of it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.gc import pull, run_gc
from tests.support.oci import push_image
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer


def wharf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry.cli", *args, "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


class Pusher:
    """Pushes images one after another from a thread until stopped; ``done`` holds
    every image whose manifest PUT was answered 201, in order."""

    def __init__(self, server: WharfServer) -> None:
        self.server = server
        self.done: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client() as c:
            n = 0
            while not self.stopping.is_set():
                repo, tag = f"busy/app{n % 7}", f"v{n}"
                layers = [f"layer {n} {i}".encode() * (50 + n) for i in range(2)]
                push_image(c, repo, tag, layers)
                self.done.append((repo, tag))
                n += 1

    def __enter__(self) -> Pusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)


def images(client: httpx.Client) -> set[tuple[str, str]]:
    """Every (repository, tag) the registry lists."""
    found: set[tuple[str, str]] = set()
    for repo in client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]:
        tags = client.get(f"/v2/{repo}/tags/list").json()["tags"] or []
        found |= {(repo, tag) for tag in tags}
    return found


def backup_while_busy(server: WharfServer, target: Path) -> tuple[set[Any], set[Any]]:
    """Back up while a client pushes; (images pushed before the backup began, all pushed)."""
    with Pusher(server) as pusher:
        while len(pusher.done) < 8:
            threading.Event().wait(0.05)
        before = set(pusher.done)
        made = wharf(server.config_path, "backup", str(target), "--json")
        assert made.returncode == 0, made.stderr
        while len(pusher.done) < len(before) + 5:  # pushes went on during and after it
            threading.Event().wait(0.05)
    manifest = json.loads((target / "backup.json").read_text())
    assert json.loads(made.stdout)["sha256"] == manifest["sha256"]
    return before, set(pusher.done)


def restore_and_check(
    source: WharfServer,
    backup: Path,
    workdir: Path,
    before: set[Any],
    pushed: set[Any],
    database: dict[str, Any] | None = None,
) -> None:
    # the storage, copied after the metadata backup (as `wharf backup` says to)
    root = workdir / "data"
    shutil.copytree(source.root, root, ignore=shutil.ignore_patterns("wharf.db*"))
    config: dict[str, Any] = {"storage": {"filesystem": {"rootdirectory": str(root)}}}
    if database:
        config["database"] = database
    restored = WharfServer(workdir / "server", config)
    restored.config_path.write_text(yaml.safe_dump(restored.config))
    done = wharf(restored.config_path, "restore", str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "objects it refers to are there" in done.stdout
    restored.start()
    try:
        with restored.client() as c:
            held = images(c)
            assert before <= held <= pushed  # all that was there; nothing half-written
            for repo, tag in sorted(held):
                pull(c, repo, tag)
            run_gc(restored.config_path)
            assert images(c) == held
            for repo, tag in sorted(held):
                pull(c, repo, tag)
    finally:
        restored.stop()


def test_backup_of_a_busy_sqlite_registry_restores_whole(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "source").start()
    try:
        before, pushed = backup_while_busy(server, tmp_path / "backup")
    finally:
        server.stop()
    assert (tmp_path / "backup" / "metadata.sqlite3").is_file()
    restore_and_check(server, tmp_path / "backup", tmp_path / "restored", before, pushed)
    # a second restore over the now existing database is refused, and changes nothing
    config = tmp_path / "restored" / "server" / "config.yml"
    db = tmp_path / "restored" / "data" / "wharf.db"
    size = db.stat().st_size
    again = wharf(config, "restore", str(tmp_path / "backup"))
    assert again.returncode == 2 and "--force" in again.stderr
    assert db.stat().st_size == size
    # a backup into a directory that is not empty is refused
    refused = wharf(server.config_path, "backup", str(tmp_path / "backup"))
    assert refused.returncode == 2 and "not empty" in refused.stderr


def test_restore_reports_storage_that_lacks_objects(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "source").start()
    try:
        with server.client() as c:
            push_image(c, "lost/app", "v1", [b"a layer that will be lost"])
        assert wharf(server.config_path, "backup", str(tmp_path / "backup")).returncode == 0
    finally:
        server.stop()
    root = tmp_path / "empty-storage"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    done = wharf(config, "restore", str(tmp_path / "backup"))
    assert done.returncode == 1
    assert "missing from storage: sha256:" in done.stdout
    assert "copy the storage that goes with this backup" in done.stderr


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "source").start()
    try:
        assert wharf(server.config_path, "backup", str(tmp_path / "backup")).returncode == 0
    finally:
        server.stop()
    dump = tmp_path / "backup" / "metadata.sqlite3"
    data = bytearray(dump.read_bytes())
    data[-1] ^= 0xFF
    dump.write_bytes(bytes(data))
    config = tmp_path / "config.yml"
    root = tmp_path / "fresh"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    done = wharf(config, "restore", str(tmp_path / "backup"))
    assert done.returncode == 2 and "sha256" in done.stderr
    assert not (root / "wharf.db").exists()


def test_backup_of_a_busy_postgres_registry_restores_whole(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    config = {"database": {"url": postgres.create_database()}}
    server = WharfServer(tmp_path / "source", config).start()
    try:
        before, pushed = backup_while_busy(server, tmp_path / "backup")
    finally:
        server.stop()
    assert (tmp_path / "backup" / "metadata.pgdump").is_file()
    fresh = {"url": postgres.create_database()}
    restore_and_check(server, tmp_path / "backup", tmp_path / "restored", before, pushed, fresh)
    # into a database that is not empty: refused
    occupied = tmp_path / "occupied.yml"
    storage = {"filesystem": {"rootdirectory": str(tmp_path / "other")}}
    occupied.write_text(yaml.safe_dump({"database": fresh, "storage": storage}))
    again = wharf(occupied, "restore", str(tmp_path / "backup"))
    assert again.returncode == 2 and "not empty" in again.stderr
