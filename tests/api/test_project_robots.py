"""Robot accounts scoped to a project (``robot$PROJECT+NAME``) against a real server:
``/api/projects/NAME/robots``, who may manage them, the robot's access in Basic and
token mode (exactly its permissions, nothing elsewhere), revoke, expiry, PATCH, the
project's delete, and system robots beside them."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.cli import main
from tests.support.oci import push_blob, push_image
from tests.support.postgres import PostgresCluster
from tests.support.projects import as_user, basic_config, error, start_basic, start_token
from tests.support.server import WharfServer

CI_PERMISSIONS = [
    {"repositories": ["app"], "actions": ["push", "pull"]},
    {"repositories": ["*"], "actions": ["pull"]},
]


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_basic(tmp_path_factory.mktemp("project-robots-basic"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_token(tmp_path_factory.mktemp("project-robots-token"))
    yield server
    server.stop()


def create(
    server: WharfServer, user: str, name: str, project: str = "team", **body: Any
) -> dict[str, Any]:
    body = {"name": name, "permissions": CI_PERMISSIONS, **body}
    with as_user(server, user) as c:
        r = c.post(f"/api/projects/{project}/robots", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    made: dict[str, Any] = r.json()
    return made


def robot_client(server: WharfServer, made: dict[str, Any]) -> httpx.Client:
    return server.client(auth=(made["name"], made["secret"]))


def test_a_maintainer_creates_a_robot_that_pushes_only_where_allowed(basic: WharfServer) -> None:
    made = create(basic, "mary", "ci", expires="30d", description="CI of team")
    assert made["name"] == "robot$team+ci" and made["project"] == "team"
    assert made["permissions"] == [
        {"repositories": ["app"], "actions": ["pull", "push"]},
        {"repositories": ["*"], "actions": ["pull"]},
    ]
    assert len(made["secret"]) == 43 and made["created_by"] == "mary"
    assert made["expires_at"] and made["expired"] is False
    with robot_client(basic, made) as robot:
        push_image(robot, "team/app", "from-robot", [b"robot layer"])
        assert robot.get("/v2/team/app/manifests/from-robot").status_code == 200
        assert robot.get("/v2/team/app/manifests/v1").status_code == 200
        # pull on every repository of the project, push only on team/app
        r = robot.post("/v2/team/other/blobs/uploads/")
        assert r.status_code == 403 and error(r)["code"] == "DENIED"
        r = robot.delete("/v2/team/app/manifests/from-robot")
        assert r.status_code == 403
        # nothing in another project, not even a public one's pull
        assert robot.get("/v2/pub/base/manifests/v1").status_code == 403
        assert robot.post("/v2/pub/base/blobs/uploads/").status_code == 403
        # the catalog lists what it may pull, only in its project
        names = robot.get("/v2/_catalog").json()["repositories"]
        assert "team/app" in names and "pub/base" not in names
        # it is no member: the project's API does not open to it
        assert robot.get("/api/projects/team/robots").status_code == 404
        assert robot.post("/api/projects/team/robots", json={"name": "x"}).status_code == 404


def test_the_secret_is_shown_once(basic: WharfServer) -> None:
    made = create(basic, "olga", "once")
    with as_user(basic, "mary") as mary:
        listed = mary.get("/api/projects/team/robots").json()["robots"]
        one = mary.get("/api/projects/team/robots/once")
        full = mary.get("/api/projects/team/robots/robot$team+once")
    assert made["secret"] not in str(listed)
    assert {r["name"] for r in listed} >= {"robot$team+once"}
    assert all("secret" not in r for r in listed)
    assert one.status_code == 200 and "secret" not in one.json()
    assert full.json() == one.json()
    # system robots are listed apart: /api/robots does not show a project's robots
    with as_user(basic, "admin") as admin:
        system = admin.get("/api/robots").json()["robots"]
    assert "robot$team+once" not in {r["name"] for r in system}


def test_who_may_manage_a_projects_robots(basic: WharfServer) -> None:
    body = {"name": "denied", "permissions": CI_PERMISSIONS}
    for user, status, code in (
        ("dave", 403, "DENIED"),  # developer
        ("gina", 403, "DENIED"),  # guest
        ("eve", 404, "PROJECT_UNKNOWN"),  # no role in the private project
    ):
        with as_user(basic, user) as c:
            for r in (
                c.post("/api/projects/team/robots", json=body),
                c.get("/api/projects/team/robots"),
                c.delete("/api/projects/team/robots/once"),
            ):
                assert r.status_code == status and error(r)["code"] == code, (user, r.text)
    with as_user(basic, None) as anon:
        assert anon.post("/api/projects/team/robots", json=body).status_code == 401
    with as_user(basic, "eve") as eve:  # public project, no role: may see, not manage
        r = eve.post("/api/projects/pub/robots", json=body)
        assert r.status_code == 403 and error(r)["code"] == "DENIED"
    with as_user(basic, "mary") as mary:
        assert "robot$team+denied" not in str(mary.get("/api/projects/team/robots").json())
    # administrators may, in any project; a missing project is named
    create(basic, "admin", "by-admin", project="pub")
    with as_user(basic, "admin") as admin:
        r = admin.post("/api/projects/nowhere/robots", json=body)
        assert r.status_code == 404 and error(r)["code"] == "PROJECT_UNKNOWN"


def test_bad_requests_name_every_problem_and_change_nothing(basic: WharfServer) -> None:
    body = {
        "name": "Bad!",
        "permissions": [
            {"repositories": ["../other/app", "ok"], "actions": ["pull", "fly"]},
            {"repositories": [], "actions": ["pull"]},
        ],
        "expires": "soon",
        "colour": "blue",
    }
    with as_user(basic, "mary") as mary:
        before = mary.get("/api/projects/team/robots").json()
        r = mary.post("/api/projects/team/robots", json=body)
        assert r.status_code == 400 and error(r)["code"] == "ROBOT_INVALID"
        assert set(error(r)["detail"]) == {
            "name",
            "permissions[0].repositories[0]",
            "permissions[0].actions",
            "permissions[1].repositories",
            "expires",
            "colour",
        }
        r = mary.post("/api/projects/team/robots", json={"name": "nothing"})
        assert r.status_code == 400 and set(error(r)["detail"]) == {"permissions"}
        r = mary.post("/api/projects/team/robots", content=b"[1]")
        assert r.status_code == 400 and error(r)["code"] == "ROBOT_INVALID"
        assert mary.get("/api/projects/team/robots").json() == before
    create(basic, "mary", "twice")
    with as_user(basic, "mary") as mary:
        again = {"name": "twice", "permissions": CI_PERMISSIONS}
        r = mary.post("/api/projects/team/robots", json=again)
        assert r.status_code == 409 and error(r)["code"] == "ROBOT_EXISTS"


def test_revoked_and_expired_robots_are_refused(basic: WharfServer) -> None:
    revoked = create(basic, "mary", "revoked")
    expired = create(basic, "mary", "expired", expires="30d")
    with robot_client(basic, revoked) as robot:
        assert robot.get("/v2/team/app/manifests/v1").status_code == 200
    with as_user(basic, "mary") as mary:
        assert mary.delete("/api/projects/team/robots/revoked").status_code == 204
        r = mary.delete("/api/projects/team/robots/revoked")
        assert r.status_code == 404 and error(r)["code"] == "ROBOT_UNKNOWN"
    with robot_client(basic, revoked) as robot:
        assert robot.get("/v2/team/app/manifests/v1").status_code == 401
    # its expiry passed (set in the database: no waiting)
    with sqlite3.connect(basic.root / "wharf.db") as db:
        db.execute(
            "UPDATE robots SET expires_at = '2000-01-01 00:00:00.000000' WHERE name = ?",
            (expired["name"],),
        )
    with robot_client(basic, expired) as robot:
        assert robot.get("/v2/team/app/manifests/v1").status_code == 401
    with as_user(basic, "mary") as mary:
        assert mary.get("/api/projects/team/robots/expired").json()["expired"] is True


def test_changed_permissions_apply_at_once(basic: WharfServer) -> None:
    made = create(basic, "mary", "changing")
    with robot_client(basic, made) as robot:
        push_blob(robot, "team/app", b"before the change")
    with as_user(basic, "mary") as mary:
        pull_only = {"permissions": [{"repositories": ["app"], "actions": ["pull"]}]}
        r = mary.patch("/api/projects/team/robots/changing", json=pull_only)
        assert r.status_code == 200, r.text
        assert r.json()["permissions"] == pull_only["permissions"]
        r = mary.patch("/api/projects/team/robots/changing", json={"name": "other"})
        assert r.status_code == 400 and set(error(r)["detail"]) == {"name"}
    with robot_client(basic, made) as robot:
        assert robot.post("/v2/team/app/blobs/uploads/").status_code == 403
        assert robot.get("/v2/team/app/manifests/v1").status_code == 200
        assert robot.get("/v2/team/other/tags/list").status_code == 403  # * was dropped


def test_deleting_the_project_revokes_its_robots(basic: WharfServer) -> None:
    with as_user(basic, "admin") as admin:
        assert admin.post("/api/projects", json={"name": "short"}).status_code == 201
    made = create(basic, "admin", "ci", project="short")
    with robot_client(basic, made) as robot:
        push_blob(robot, "short/app", b"short-lived")  # no manifest: the project may go
    with as_user(basic, "admin") as admin:
        assert admin.delete("/api/projects/short").status_code == 204
        assert admin.post("/api/projects", json={"name": "short"}).status_code == 201
    with robot_client(basic, made) as robot:  # a project made again gives nothing back
        assert robot.get("/v2/short/app/tags/list").status_code == 401


def test_system_robots_keep_their_groups_and_rules(basic: WharfServer) -> None:
    with as_user(basic, "admin") as admin:
        r = admin.post("/api/robots", json={"name": "builder", "groups": ["devs"]})
        assert r.status_code == 201, r.text
        made = r.json()
        admin.put("/api/projects/team/members/group/devs", json={"role": "developer"})
    with basic.client(auth=("robot$builder", made["secret"])) as robot:
        push_blob(robot, "team/app", b"system robot blob")  # group devs: developer
        assert robot.get("/v2/pub/base/manifests/v1").status_code == 200  # public


def test_token_mode(token: WharfServer) -> None:
    made = create(token, "mary", "ci")
    asked = {
        "repository:team/app:pull,push": "repository:team/app:pull,push",
        "repository:team/other:pull,push": "repository:team/other:pull",
        "repository:pub/base:pull": None,
        "repository:team/app:delete": None,
        "registry:catalog:*": None,
    }
    with robot_client(token, made) as c:
        for scope, granted in asked.items():
            r = c.get("/token", params={"service": "wharf-test", "scope": scope})
            assert r.status_code == 200, r.text
            assert r.json().get("scope") == granted, scope
        r = c.get(
            "/token", params={"service": "wharf-test", "scope": "repository:team/app:pull,push"}
        )
        bearer = r.json()["token"]
    with token.client(headers={"Authorization": f"Bearer {bearer}"}) as robot:
        push_image(robot, "team/app", "token-robot", [b"token robot layer"])
    with as_user(token, "mary") as mary:
        assert mary.delete("/api/projects/team/robots/ci").status_code == 204
    with token.client(auth=(made["name"], made["secret"])) as c:
        r = c.get("/token", params={"service": "wharf-test", "scope": "repository:team/app:pull"})
        assert r.status_code == 401


def test_the_web_pages_refuse_a_project_robots_sign_in(basic: WharfServer) -> None:
    made = create(basic, "mary", "pages")
    with basic.client() as c:
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
        assert token is not None
        form = {"csrf": token.group(1), "username": made["name"], "password": made["secret"]}
        r = c.post("/ui/login", data=form)
        assert r.status_code == 403 and "cannot sign in" in r.text
    # with Basic credentials the pages show what its permissions allow
    with robot_client(basic, made) as robot:
        text = robot.get("/ui/").text
    assert "?name=team/app&amp;" in text and "?name=pub/base&amp;" not in text


def wharf_robot(
    server: WharfServer, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``wharf robot ARGS -c CONFIG`` (in this process: the same code as the command)."""
    capsys.readouterr()
    code = main(["robot", *args, "-c", str(server.config_path)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_cli(basic: WharfServer, capsys: pytest.CaptureFixture[str]) -> None:
    made = wharf_robot(
        basic, capsys, "create", "--project", "team", "from-cli",
        "--permission", "app:pull,push", "--expires", "1d", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    robot = json.loads(made.stdout)
    assert robot["name"] == "robot$team+from-cli" and robot["project"] == "team"
    assert robot["permissions"] == [{"repositories": ["app"], "actions": ["pull", "push"]}]
    with robot_client(basic, robot) as c:  # the running server sees what the CLI wrote
        push_blob(c, "team/app", b"from the cli robot")
        assert c.post("/v2/team/other/blobs/uploads/").status_code == 403
    listing = wharf_robot(basic, capsys, "list", "--project", "team")
    assert "robot$team+from-cli\tpermissions=app:pull,push" in listing.stdout
    assert robot["secret"] not in listing.stdout
    bad = wharf_robot(basic, capsys, "create", "--project", "team", "x", "--permission", "../a:fly")
    assert bad.returncode == 2
    assert "permissions[0].repositories[0]" in bad.stderr and "permissions[0].actions" in bad.stderr
    missing = wharf_robot(
        basic, capsys, "create", "--project", "nope", "x", "--permission", "a:pull"
    )
    assert missing.returncode == 1 and "no project nope" in missing.stderr
    assert "robot$team+from-cli" not in wharf_robot(basic, capsys, "list").stdout  # system only
    revoked = wharf_robot(basic, capsys, "revoke", "robot$team+from-cli")
    assert revoked.returncode == 0, revoked.stderr
    with robot_client(basic, robot) as c:
        assert c.get("/v2/team/app/tags/list").status_code == 401


def test_postgres(tmp_path: Path, postgres: PostgresCluster) -> None:
    """The same on PostgreSQL metadata: create, push, the project's delete cascades."""
    config = {**basic_config(tmp_path), "database": {"url": postgres.create_database()}}
    server = WharfServer(tmp_path / "server", config).start()
    try:
        with as_user(server, "admin") as admin:
            assert admin.post("/api/projects", json={"name": "team"}).status_code == 201
            admin.put("/api/projects/team/members/user/mary", json={"role": "maintainer"})
        made = create(server, "mary", "ci")
        with robot_client(server, made) as robot:
            push_image(robot, "team/app", "v1", [b"postgres robot layer"])
            assert robot.post("/v2/team/other/blobs/uploads/").status_code == 403
        with as_user(server, "admin") as admin:
            assert admin.delete("/api/projects/team?force=true").status_code == 204
        with robot_client(server, made) as robot:
            assert robot.get("/v2/team/app/tags/list").status_code == 401
    finally:
        server.stop()
