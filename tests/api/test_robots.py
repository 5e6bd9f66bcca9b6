"""Robot accounts: the admin API (``/api/robots``), the CLI, and robots logging in
(Basic auth, on SQLite and on PostgreSQL metadata)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from registry.cli import main
from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.oci import assert_error, push_image, unique_name
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer
from tests.support.slapd import ONE_WORKER

ADMIN = ("admin", PASSWORDS["admin"])
ALICE = ("alice", PASSWORDS["alice"])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp(f"robots-{request.param}")
    config = {**htpasswd_config(workdir), "http": ONE_WORKER}
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": cluster.create_database()}
    server = WharfServer(workdir / "server", config).start()
    yield server
    server.stop()


def _api_error(r: httpx.Response, status: int, code: str) -> None:
    """An error of Wharf's own API: the OCI error body with Wharf's code."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    assert [e["code"] for e in r.json()["errors"]] == [code]


def _create(c: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    r = c.post("/api/robots", json={"name": name, **body}, auth=ADMIN)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    made: dict[str, Any] = r.json()
    return made


def _v2(c: httpx.Client, user: str, secret: str) -> int:
    return c.get("/v2/", auth=(user, secret)).status_code


def test_create_list_and_log_in(secured: WharfServer) -> None:
    with secured.client() as c:
        made = _create(c, "ci-a", description="CI of team a", groups=["team-a"], expires="30d")
        assert made["name"] == "robot$ci-a"
        assert made["groups"] == ["team-a"] and made["created_by"] == "admin"
        assert made["expires_at"].endswith("Z") and made["expired"] is False
        secret = made["secret"]
        assert len(secret) >= 43
        # the secret is never shown again
        listed = c.get("/api/robots", auth=ADMIN)
        assert listed.status_code == 200
        assert secret not in listed.text and "secret" not in listed.text
        names = [r["name"] for r in listed.json()["robots"]]
        assert "robot$ci-a" in names
        # a second robot of the same name is refused, the first keeps its secret
        r = c.post("/api/robots", json={"name": "robot$ci-a"}, auth=ADMIN)
        _api_error(r, 409, "ROBOT_EXISTS")
        assert secret not in r.text

        # the robot is a user for the policy, with its groups: team-a may push team-a/*
        c.auth = ("robot$ci-a", secret)
        name = f"team-a/{unique_name('r').split('/')[1]}"
        push_image(c, name, "v1", [b"robot layer"])
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        r = c.post("/v2/other/robot/blobs/uploads/")
        assert_error(r, 403, "DENIED")
        assert c.get("/v2/other/robot/tags/list", auth=ADMIN).status_code == 404
        assert _v2(c, "robot$ci-a", secret + "x") == 401
    assert secret not in secured.log()


def test_only_admins_manage_robots(secured: WharfServer) -> None:
    with secured.client() as c:
        r = c.get("/api/robots")
        assert_error(r, 401, "UNAUTHORIZED")
        r = c.post("/api/robots", json={"name": "sneaky"}, auth=ALICE)
        assert_error(r, 403, "DENIED")
        r = c.delete("/api/robots/robot$ci-a", auth=ALICE)
        assert_error(r, 403, "DENIED")
        r = c.get("/api/robots", auth=("alice", "wrong"))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="wharf-test"'
        names = [x["name"] for x in c.get("/api/robots", auth=ADMIN).json()["robots"]]
        assert "robot$sneaky" not in names


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad Name"},
        {"name": "robot$"},
        {"name": "x" * 80},
        {"name": "ok1", "expires": "soon"},
        {"name": "ok2", "groups": "team-a"},
        {"name": "ok3", "groups": ["*)(cn=*"]},
        {"description": "no name"},
    ],
)
def test_bad_requests_change_nothing(secured: WharfServer, body: dict[str, Any]) -> None:
    with secured.client() as c:
        before = c.get("/api/robots", auth=ADMIN).json()
        r = c.post("/api/robots", json=body, auth=ADMIN)
        _api_error(r, 400, "ROBOT_INVALID")
        assert c.get("/api/robots", auth=ADMIN).json() == before
        r = c.post("/api/robots", content=b"[not json", auth=ADMIN)
        _api_error(r, 400, "ROBOT_INVALID")


def test_revoked_robot_is_refused(secured: WharfServer) -> None:
    with secured.client() as c:
        secret = _create(c, "revoke-me")["secret"]
        assert _v2(c, "robot$revoke-me", secret) == 200
        assert c.delete("/api/robots/robot%24revoke-me", auth=ADMIN).status_code == 204
        r = c.get("/v2/", auth=("robot$revoke-me", secret))
        assert_error(r, 401, "UNAUTHORIZED")
        _api_error(c.delete("/api/robots/revoke-me", auth=ADMIN), 404, "ROBOT_UNKNOWN")
        # a new robot of the same name gets a new secret: the old one stays refused
        again = _create(c, "revoke-me")["secret"]
        assert again != secret
        assert _v2(c, "robot$revoke-me", secret) == 401
        assert _v2(c, "robot$revoke-me", again) == 200


def test_expired_robot_is_refused(secured: WharfServer) -> None:
    with secured.client() as c:
        made = _create(c, "short-lived", expires="2s")
        assert _v2(c, "robot$short-lived", made["secret"]) == 200
        time.sleep(2.2)
        r = c.get("/v2/", auth=("robot$short-lived", made["secret"]))
        assert_error(r, 401, "UNAUTHORIZED")
        listed = {x["name"]: x for x in c.get("/api/robots", auth=ADMIN).json()["robots"]}
        assert listed["robot$short-lived"]["expired"] is True


def _cli(
    server: WharfServer, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``wharf robot ARGS -c CONFIG`` (in this process: the same code as the command)."""
    capsys.readouterr()
    code = main(["robot", *args, "-c", str(server.config_path)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_cli_create_list_revoke(secured: WharfServer, capsys: pytest.CaptureFixture[str]) -> None:
    made = _cli(
        secured, capsys, "create", "from-cli", "--group", "team-a", "--expires", "1d", "--json"
    )
    assert made.returncode == 0, made.stderr
    robot = json.loads(made.stdout)
    assert robot["name"] == "robot$from-cli" and robot["groups"] == ["team-a"]
    secret = robot["secret"]
    with secured.client() as c:
        # the running server sees the robot the CLI wrote in its database
        assert _v2(c, "robot$from-cli", secret) == 200
        assert (
            c.post("/v2/team-a/cli/blobs/uploads/", auth=("robot$from-cli", secret)).status_code
            == 202
        )
    listing = _cli(secured, capsys, "list")
    assert listing.returncode == 0
    assert "robot$from-cli" in listing.stdout and "groups=team-a" in listing.stdout
    assert secret not in listing.stdout
    again = _cli(secured, capsys, "create", "robot$from-cli")
    assert again.returncode == 1 and "exists" in again.stderr
    revoked = _cli(secured, capsys, "revoke", "robot$from-cli")
    assert revoked.returncode == 0, revoked.stderr
    with secured.client() as c:
        assert _v2(c, "robot$from-cli", secret) == 401
