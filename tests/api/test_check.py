"""``wharf check``: the configuration's problems with their key paths, then every
dependency it names reached for real (storage, database, a real slapd, the token key
pair, a notification receiver, a mirror upstream and a replication target that are real
registries), a table, and the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.auth import PASSWORDS, write_htpasswd, write_keys
from tests.support.receiver import Receiver
from tests.support.server import WharfServer, free_port
from tests.support.slapd import Slapd, ldap_settings


def check(config: dict[str, Any], workdir: Path) -> tuple[int, list[dict[str, str]], str]:
    """``wharf check`` of ``config``: (exit code, rows as JSON, the table as printed)."""
    path = workdir / "check.yml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "registry.cli", "check", "-c", str(path)]
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    shown = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert as_json.returncode == shown.returncode, shown.stdout + shown.stderr
    return as_json.returncode, json.loads(as_json.stdout), shown.stdout


def rows(found: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    return {(r["check"], r["target"]): r["status"] for r in found}


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """A registry with htpasswd users: the mirror's upstream and the replication target."""
    workdir = tmp_path_factory.mktemp("peer")
    auth = {"htpasswd": {"realm": "peer", "path": str(write_htpasswd(workdir / "htpasswd"))}}
    server = WharfServer(workdir / "server", {"auth": auth}).start()
    yield server
    server.stop()


def full_config(
    workdir: Path, slapd: Slapd, peer: WharfServer, receiver: Receiver
) -> dict[str, Any]:
    key, cert = write_keys(workdir / "keys")
    port = free_port()
    return {
        "version": "0.1",
        "http": {"addr": f"127.0.0.1:{port}"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        "auth": {
            "ldap": ldap_settings(slapd),
            "token": {
                "realm": f"http://127.0.0.1:{port}/token",
                "service": "wharf-check",
                "issuer": "wharf-check-issuer",
                "rootcertbundle": str(cert),
            },
            "tokenserver": {"key": str(key), "certificate": str(cert)},
        },
        "notifications": {"endpoints": [{"name": "listener", "url": receiver.url}]},
        "mirrors": [
            {
                "prefix": "up",
                "remoteurl": peer.url,
                "username": "admin",
                "password": PASSWORDS["admin"],
            },
        ],
        "replication": {
            "rules": [
                {
                    "name": "to-peer",
                    "remote": {
                        "url": peer.url,
                        "username": "admin",
                        "password": PASSWORDS["admin"],
                    },
                },
            ]
        },
    }


def test_everything_reached(tmp_path: Path, slapd: Slapd, peer: WharfServer) -> None:
    receiver = Receiver(tmp_path / "receiver").start()
    try:
        code, found, shown = check(full_config(tmp_path, slapd, peer, receiver), tmp_path)
    finally:
        receiver.stop()
    assert code == 0, shown
    assert {r["check"] for r in found} == {
        "config", "storage", "database", "ldap", "token", "notifications", "upstream",
        "replication",
    }  # fmt: skip
    assert all(r["status"] == "ok" for r in found), shown
    by = {r["check"]: r["detail"] for r in found}
    assert "wrote, read back and deleted" in by["storage"]
    assert "bound service account; found user" in by["ldap"]
    assert "signed a token (ES256) and verified it" in by["token"]
    assert "accepted an empty envelope (200)" in by["notifications"]
    assert "0 failed, 0 warnings" in shown and "STATUS" in shown.splitlines()[0]
    # the storage probe left no object behind
    assert not [
        p for p in (tmp_path / "data").rglob("*") if p.is_file() and "_wharf_check" in str(p)
    ]


def test_every_broken_dependency_is_reported(
    tmp_path: Path, slapd: Slapd, peer: WharfServer
) -> None:
    receiver = Receiver(tmp_path / "receiver").start()
    config = full_config(tmp_path, slapd, peer, receiver)
    receiver.stop()  # nobody receives events now
    config["auth"]["ldap"]["bindpassword"] = "not-the-service-password"
    _, other_cert = write_keys(tmp_path / "other-keys")  # a bundle of another key
    config["auth"]["token"]["rootcertbundle"] = str(other_cert)
    config["mirrors"][0]["password"] = "wrong"
    config["replication"]["rules"][0]["remote"]["url"] = f"http://127.0.0.1:{free_port()}"
    code, found, shown = check(config, tmp_path)
    assert code == 1
    status = rows(found)
    assert status[("storage", str(tmp_path / "data"))] == "ok"
    assert status[("database", f"sqlite+aiosqlite:///{tmp_path / 'data' / 'wharf.db'}")] == "ok"
    for broken in ("ldap", "token", "notifications", "upstream", "replication"):
        assert [s for (c, _), s in status.items() if c == broken] == ["fail"], (broken, shown)
    assert "5 failed" in shown


def test_config_problems_come_all_at_once_with_their_key_paths(tmp_path: Path) -> None:
    config = {
        "version": "0.1",
        "storage": {"filesystem": {"rootdirectory": 5}, "cache": {"blobdescriptor": "redis"}},
        "gc": {"schedule": "every full moon"},
        "http": {"workers": "many", "tls": {"certificate": "/nowhere.pem"}},
        "notifications": {"endpoints": [{"name": "x", "url": "http://x", "timeuot": "1s"}]},
    }
    code, found, shown = check(config, tmp_path)
    assert code == 1
    status = rows(found)
    for path in ("storage.filesystem.rootdirectory", "gc.schedule", "http.workers"):
        assert status[("config", path)] == "fail", shown
    assert status[("config", "storage.cache")] == "warn"
    assert status[("config", "notifications.endpoints[0].timeuot")] == "warn"
    assert status[("dependencies", "-")] == "skip"
    # valid values, files that are not there: each with its key path
    config = {
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": "no-port-here", "tls": {"certificate": "/nowhere.pem", "key": "/no.key"}},
        "auth": {"htpasswd": {"realm": "r", "path": str(tmp_path / "missing-htpasswd")}},
    }
    code, found, shown = check(config, tmp_path)
    assert code == 1
    status = rows(found)
    for path in ("http.addr", "http.tls.certificate", "http.tls.key", "auth.htpasswd.path"):
        assert status[("config", path)] == "fail", (path, shown)


def test_an_old_schema_is_reported(tmp_path: Path) -> None:
    import sqlite3

    root = tmp_path / "data"
    root.mkdir()
    db = sqlite3.connect(root / "wharf.db")
    db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    db.execute("INSERT INTO alembic_version VALUES ('0009')")
    db.commit()
    db.close()
    code, found, _ = check({"storage": {"filesystem": {"rootdirectory": str(root)}}}, tmp_path)
    assert code == 1
    detail = next(r["detail"] for r in found if r["check"] == "database")
    assert "schema at revision 0009" in detail and "wharf db upgrade" in detail
