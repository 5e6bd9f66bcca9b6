"""Local users (``auth.local``) against a real ``wharf serve`` with an htpasswd file too:
the first admin made with ``wharf user create``, ``/api/users``, logins with Basic auth
and at the built-in token service, disabling, password changes, self-registration."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import PASSWORDS
from tests.support.oci import assert_error, push_image, unique_name
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer
from tests.support.users import ROOT, start_with_local_users, wharf_cli


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def basic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    config: dict[str, Any] = {}
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": cluster.create_database()}
    workdir = tmp_path_factory.mktemp(f"users-{request.param}")
    server = start_with_local_users(workdir, "basic", config=config)
    yield server
    server.stop()


def _hashes(server: WharfServer, request: pytest.FixtureRequest) -> dict[str, str]:
    """name -> password_hash, read from the server's database itself."""
    url = server.config.get("database", {}).get("url", "")
    if url.startswith("postgresql"):
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        out = cluster.psql("SELECT name || ' ' || password_hash FROM users", url.rsplit("/", 1)[1])
        return dict(line.split(" ", 1) for line in out.splitlines())
    with sqlite3.connect(server.root / "wharf.db") as db:
        return dict(db.execute("SELECT name, password_hash FROM users").fetchall())


def _create(c: httpx.Client, name: str, password: str, **extra: Any) -> dict[str, Any]:
    r = c.post("/api/users", json={"name": name, "password": password, **extra}, auth=ROOT)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def _v2(c: httpx.Client, user: str, password: str) -> int:
    return c.get("/v2/", auth=(user, password)).status_code


def api_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An error of Wharf's own API: the OCI error body with Wharf's code."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    errors = r.json()["errors"]
    assert [e["code"] for e in errors] == [code]
    assert set(errors[0]) <= {"code", "message", "detail"}
    found: dict[str, Any] = errors[0]
    return found


def _problems(r: httpx.Response) -> dict[str, str]:
    error = api_error(r, 400, "USER_INVALID")
    return {d["field"]: d["problem"] for d in error["detail"]}


def test_admin_from_the_cli_creates_a_user_who_pushes_and_pulls(basic: WharfServer) -> None:
    with basic.client() as c:
        made = _create(c, "dana", "dana-password", email="dana@example.org")
        assert made["name"] == "dana" and made["admin"] is False
        assert made["created_by"] == "root" and made["disabled"] is False
        assert "dana-password" not in str(made) and "password_hash" not in made
        c.auth = ("dana", "dana-password")
        name = f"users/{unique_name('d').split('/')[1]}"
        digest, _ = push_image(c, name, "v1", [b"dana's layer"])
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert c.get(f"/v2/{name}/manifests/{digest}").status_code == 200
        assert_error(c.post("/v2/team-a/x/blobs/uploads/"), 403, "DENIED")
        me = c.get("/api/users/me").json()
        assert me == {"name": "dana", "source": "local", "admin": False, "groups": []}
        assert _v2(c, "dana", "wrong-password") == 401
        # dana is no administrator
        assert_error(c.get("/api/users"), 403, "DENIED")
        assert_error(c.get("/api/robots"), 403, "DENIED")
    log = basic.log()
    assert "dana-password" not in log and ROOT[1] not in log


def test_the_database_holds_only_a_bcrypt_hash(
    basic: WharfServer, request: pytest.FixtureRequest
) -> None:
    with basic.client() as c:
        _create(c, "hashed", "hashed-password")
    rows = _hashes(basic, request)
    assert rows["hashed"].startswith("$2b$12$") and len(rows["hashed"]) == 60
    assert all("hashed-password" not in h and ROOT[1] not in h for h in rows.values())


def test_a_local_admin_uses_the_admin_apis(basic: WharfServer) -> None:
    with basic.client() as c:
        r = c.post("/api/robots", json={"name": "by-root", "groups": ["ci"]}, auth=ROOT)
        assert r.status_code == 201, r.text
        assert r.json()["created_by"] == "root"
        robot = ("robot$by-root", r.json()["secret"])
        me = c.get("/api/users/me", auth=robot).json()
        assert me == {"name": "robot$by-root", "source": "robot", "admin": False, "groups": ["ci"]}
        assert c.get("/api/robots", auth=ROOT).status_code == 200
        me = c.get("/api/users/me", auth=ROOT).json()
        assert me["admin"] is True and me["source"] == "local"
        # the htpasswd admin (auth.policy.admins) manages local users too
        admin = ("admin", PASSWORDS["admin"])
        assert c.get("/api/users", auth=admin).status_code == 200
        me = c.get("/api/users/me", auth=admin).json()
        assert me == {"name": "admin", "source": "htpasswd", "admin": True, "groups": []}
        alice = c.get("/api/users/me", auth=("alice", PASSWORDS["alice"])).json()
        assert alice["groups"] == ["team-a"] and alice["admin"] is False
        assert_error(c.get("/api/users/me"), 401, "UNAUTHORIZED")
        # an admin may push anywhere
    with basic.client(auth=ROOT) as root:
        push_image(root, "team-a/by-root", "v1", [b"root's layer"])
        assert root.get("/v2/team-a/by-root/manifests/v1").status_code == 200


def test_disable_enable_delete_take_effect_at_once(basic: WharfServer) -> None:
    with basic.client() as c:
        _create(c, "erin", "erin-password")
        assert _v2(c, "erin", "erin-password") == 200  # now cached as verified
        r = c.patch("/api/users/erin", json={"disabled": True}, auth=ROOT)
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert_error(c.get("/v2/", auth=("erin", "erin-password")), 401, "UNAUTHORIZED")
        assert c.patch("/api/users/erin", json={"disabled": False}, auth=ROOT).status_code == 200
        assert _v2(c, "erin", "erin-password") == 200
        assert c.delete("/api/users/erin", auth=ROOT).status_code == 204
        assert _v2(c, "erin", "erin-password") == 401
        api_error(c.get("/api/users/erin", auth=ROOT), 404, "USER_UNKNOWN")
        api_error(c.delete("/api/users/erin", auth=ROOT), 404, "USER_UNKNOWN")


def test_password_change_and_reset(basic: WharfServer) -> None:
    with basic.client() as c:
        _create(c, "fred", "fred-password-1")
        assert _v2(c, "fred", "fred-password-1") == 200
        body = {"old_password": "not-it-at-all", "new_password": "fred-password-2"}
        r = c.put("/api/users/me/password", json=body, auth=("fred", "fred-password-1"))
        assert "old_password" in _problems(r)
        body["old_password"] = "fred-password-1"
        r = c.put("/api/users/me/password", json=body, auth=("fred", "fred-password-1"))
        assert r.status_code == 204, r.text
        assert _v2(c, "fred", "fred-password-1") == 401
        assert _v2(c, "fred", "fred-password-2") == 200
        # an admin's reset
        r = c.patch("/api/users/fred", json={"password": "fred-password-3"}, auth=ROOT)
        assert r.status_code == 200
        assert _v2(c, "fred", "fred-password-2") == 401
        assert _v2(c, "fred", "fred-password-3") == 200
        # htpasswd users change their password in the file, not here
        alice = ("alice", PASSWORDS["alice"])
        body = {"old_password": PASSWORDS["alice"], "new_password": "alice-new-pw"}
        assert_error(c.put("/api/users/me/password", json=body, auth=alice), 403, "DENIED")
    log = basic.log()
    assert not any(f"fred-password-{i}" in log for i in (1, 2, 3))


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "robot$sneaky", "password": "long-enough"}, {"name"}),
        ({"name": "alice", "password": "long-enough"}, {"name"}),  # in the htpasswd file
        ({"name": "bad name", "password": "long-enough"}, {"name"}),
        ({"name": "x" * 256, "password": "long-enough"}, {"name"}),
        ({"name": "me", "password": "long-enough"}, {"name"}),
        ({"name": "short", "password": "short"}, {"password"}),
        ({"name": "long", "password": "é" * 37}, {"password"}),  # 74 bytes
        (
            {"name": "", "password": 5, "email": "nope", "admin": "yes"},
            {"name", "password", "email", "admin"},
        ),
        ({"name": "extra", "password": "long-enough", "role": "x"}, {"role"}),
    ],
)
def test_bad_users_are_refused_with_every_problem(
    basic: WharfServer, body: dict[str, Any], fields: set[str]
) -> None:
    with basic.client() as c:
        before = c.get("/api/users", auth=ROOT).json()
        r = c.post("/api/users", json=body, auth=ROOT)
        assert set(_problems(r)) == fields
        assert c.get("/api/users", auth=ROOT).json() == before
    if body["name"] == "alice":
        assert "htpasswd" in _problems(r)["name"]


def test_other_bad_requests(basic: WharfServer) -> None:
    with basic.client() as c:
        _create(c, "gina", "gina-password")
        api_error(c.post("/api/users", content=b"[nope", auth=ROOT), 400, "USER_INVALID")
        r = c.post("/api/users", json={"name": "gina", "password": "another-one"}, auth=ROOT)
        api_error(r, 409, "USER_EXISTS")
        assert _v2(c, "gina", "gina-password") == 200  # unchanged
        r = c.patch("/api/users/gina", json={"disabled": "yes", "colour": 1}, auth=ROOT)
        assert set(_problems(r)) == {"disabled", "colour"}
        api_error(
            c.patch("/api/users/nobody", json={"admin": True}, auth=ROOT), 404, "USER_UNKNOWN"
        )
        r = c.patch("/api/users/root", json={"disabled": True}, auth=ROOT)
        assert "name" in _problems(r)
        assert _problems(c.delete("/api/users/root", auth=ROOT))
        assert_error(c.get("/api/users"), 401, "UNAUTHORIZED")
        assert_error(c.get("/api/users/gina", auth=("alice", PASSWORDS["alice"])), 403, "DENIED")


def test_pages(basic: WharfServer) -> None:
    with basic.client() as c:
        for i in range(3):
            _create(c, f"page-{i}", "page-password")
        names = [u["name"] for u in c.get("/api/users", auth=ROOT).json()["users"]]
        assert names == sorted(names) and {"page-0", "page-1", "page-2"} <= set(names)
        r = c.get("/api/users", params={"n": 2, "last": "page-"}, auth=ROOT)
        assert [u["name"] for u in r.json()["users"]] == ["page-0", "page-1"]
        assert r.headers["link"] == '</api/users?n=2&last=page-1>; rel="next"'


def test_self_registration_is_refused_by_default(basic: WharfServer) -> None:
    with basic.client() as c:
        body = {"name": "selfish", "password": "selfish-password"}
        assert_error(c.post("/api/users", json=body), 401, "UNAUTHORIZED")
        r = c.post("/api/users", json=body, auth=("alice", PASSWORDS["alice"]))
        assert_error(r, 403, "DENIED")
        assert _v2(c, "selfish", "selfish-password") == 401


def test_cli_changes_reach_the_server_within_refresh(tmp_path: Path) -> None:
    # refresh 0: every login reads the row again (no bcrypt while the hash is the same)
    server = start_with_local_users(tmp_path, "basic", {"refresh": "0s"})
    try:
        listed = wharf_cli(server, "user", "list")
        assert listed.returncode == 0 and "root\tadmin" in listed.stdout
        made = wharf_cli(
            server, "user", "create", "hal", "--password-stdin", password="hal-password"
        )
        assert made.returncode == 0, made.stderr
        with server.client() as c:
            assert _v2(c, "hal", "hal-password") == 200
            assert wharf_cli(server, "user", "disable", "hal").returncode == 0
            assert _v2(c, "hal", "hal-password") == 401
            assert wharf_cli(server, "user", "enable", "hal").returncode == 0
            assert _v2(c, "hal", "hal-password") == 200
            changed = wharf_cli(
                server, "user", "passwd", "hal", "--password-stdin", password="hal-password-2"
            )
            assert changed.returncode == 0, changed.stderr
            assert _v2(c, "hal", "hal-password") == 401
            assert _v2(c, "hal", "hal-password-2") == 200
            assert wharf_cli(server, "user", "delete", "hal").returncode == 0
            assert _v2(c, "hal", "hal-password-2") == 401
        refused = wharf_cli(
            server, "user", "create", "alice", "--password-stdin", password="alice-password"
        )
        assert refused.returncode == 2 and "htpasswd" in refused.stderr
        short = wharf_cli(server, "user", "create", "ivy", "--password-stdin", password="x")
        assert short.returncode == 2 and "password" in short.stderr
        again = wharf_cli(
            server, "user", "create", "root", "--password-stdin", password="root-password-2"
        )
        assert again.returncode == 1 and "exists" in again.stderr
        # `wharf policy explain` reads a local user's admin flag from the database
        explained = wharf_cli(server, "policy", "explain", "root", "nowhere/app")
        assert explained.returncode == 0, explained.stderr
        assert "root on nowhere/app: delete,pull,push" in explained.stdout
        assert "administrator" in explained.stdout
        assert wharf_cli(server, "user", "disable", "root").returncode == 0
        disabled = wharf_cli(server, "policy", "explain", "root", "nowhere/app").stdout
        assert "a disabled local user: it cannot log in" in disabled
    finally:
        server.stop()


def test_self_registration_when_on(tmp_path: Path) -> None:
    server = start_with_local_users(
        tmp_path, "basic", {"selfregistration": True, "minpasswordlength": 10}
    )
    try:
        with server.client() as c:
            body = {"name": "newbie", "password": "newbie-password", "email": "n@example.org"}
            r = c.post("/api/users", json=body)
            assert r.status_code == 201, r.text
            assert r.json()["admin"] is False and r.json()["created_by"] is None
            assert _v2(c, "newbie", "newbie-password") == 200
            # never an administrator
            r = c.post(
                "/api/users", json={"name": "boss", "password": "boss-password", "admin": True}
            )
            assert_error(r, 403, "DENIED")
            r = c.post(
                "/api/users",
                json={"name": "boss", "password": "boss-password", "admin": True},
                auth=("newbie", "newbie-password"),
            )
            assert_error(r, 403, "DENIED")
            assert _v2(c, "boss", "boss-password") == 401
            # the length rule of the config
            assert "password" in _problems(
                c.post("/api/users", json={"name": "tiny", "password": "123456789"})
            )
            # listing stays for admins
            assert_error(c.get("/api/users", auth=("newbie", "newbie-password")), 403, "DENIED")
        assert "newbie-password" not in server.log()
    finally:
        server.stop()


def test_token_mode(tmp_path: Path) -> None:
    server = start_with_local_users(tmp_path, "token")
    try:
        with server.client() as c:
            _create(c, "jo", "jo-password")
            creds = base64.b64encode(b"jo:jo-password").decode()
            r = c.get(
                "/token",
                params={"service": "wharf-test", "scope": "repository:users/jo:pull,push"},
                headers={"Authorization": f"Basic {creds}"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["scope"] == "repository:users/jo:pull,push"
            r = c.get("/token", params={"service": "wharf-test"}, auth=("jo", "wrong-one"))
            assert_error(r, 401, "UNAUTHORIZED")
            # the local admin's token grants everything; Basic on /api works too
            r = c.get(
                "/token",
                params={"service": "wharf-test", "scope": "repository:team-a/x:pull,push"},
                auth=ROOT,
            )
            assert r.json()["scope"] == "repository:team-a/x:pull,push"
            assert c.get("/api/users", auth=ROOT).status_code == 200
            c.patch("/api/users/jo", json={"disabled": True}, auth=ROOT)
            r = c.get("/token", params={"service": "wharf-test"}, auth=("jo", "jo-password"))
            assert_error(r, 401, "UNAUTHORIZED")
    finally:
        server.stop()


def test_an_open_registry_has_no_users_api(wharf: WharfServer) -> None:
    """No ``auth``: nobody logs in, so there is no ``/api/users``; ``wharf user`` still
    works on the database but says the users cannot log in."""
    with wharf.client() as c:
        assert c.get("/api/users").status_code == 404
        assert (
            c.post("/api/users", json={"name": "x", "password": "long-enough"}).status_code == 404
        )
    listed = wharf_cli(wharf, "user", "list")
    assert listed.returncode == 0 and "auth.local is not configured" in listed.stderr
