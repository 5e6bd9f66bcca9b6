"""Projects against a real server: /api/projects, roles deciding /v2/ in Basic and
token mode, the catalog and search filtered by roles, projects made by a push, and a
change seen by another process within ``projects.refresh``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oci import push_blob, push_image
from tests.support.postgres import PostgresCluster
from tests.support.projects import (
    ROLES,
    USERS,
    as_user,
    basic_config,
    bearer,
    error,
    start_basic,
    start_token,
)
from tests.support.server import WharfServer, _merge


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_basic(tmp_path_factory.mktemp("projects-basic"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_token(tmp_path_factory.mktemp("projects-token"))
    yield server
    server.stop()


# -- roles on /v2/, Basic mode -----------------------------------------------------


def test_role_matrix_basic(basic: WharfServer) -> None:
    for user in ("olga", "mary", "dave", "gina", "gus"):
        with as_user(basic, user) as c:
            assert c.get("/v2/team/app/manifests/v1").status_code == 200, user
    with as_user(basic, "eve") as eve:
        assert eve.get("/v2/team/app/manifests/v1").status_code == 403
        assert eve.get("/v2/pub/base/manifests/v1").status_code == 200
    with as_user(basic, None) as anon:
        assert anon.get("/v2/team/app/manifests/v1").status_code == 401
        assert anon.get("/v2/pub/base/manifests/v1").status_code == 200
    # push: developers and up (gus through group devs); guests are refused
    for user in ("olga", "mary", "dave", "gus"):
        with as_user(basic, user) as c:
            push_image(c, "team/app", f"by-{user}", [f"{user} layer".encode()])
    with as_user(basic, "gina") as gina:
        r = gina.post("/v2/team/app/blobs/uploads/")
        assert r.status_code == 403 and error(r)["code"] == "DENIED"
        assert "does not exist" not in error(r)["message"]
    # delete a tag, then a manifest: maintainers and owners only
    with as_user(basic, "dave") as dave:
        assert dave.delete("/v2/team/app/manifests/by-dave").status_code == 403
    with as_user(basic, "mary") as mary:
        assert mary.delete("/v2/team/app/manifests/by-dave").status_code == 202  # the tag
        digest = mary.head("/v2/team/app/manifests/by-mary").headers["docker-content-digest"]
        assert mary.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
        assert mary.get("/v2/team/app/manifests/by-mary").status_code == 404
        tags = mary.get("/v2/team/app/tags/list").json()["tags"]
    assert "by-dave" not in tags and "by-olga" in tags


def test_catalog_and_search_show_what_roles_allow(basic: WharfServer) -> None:
    def catalog(user: str | None) -> list[str]:
        with as_user(basic, user) as c:
            names: list[str] = c.get("/v2/_catalog").json()["repositories"]
            return names

    assert catalog("gina") == ["pub/base", "team/app"]
    assert catalog("eve") == ["pub/base"]
    assert catalog(None) == ["pub/base"]
    assert catalog("admin") == ["pub/base", "team/app"]

    def search(user: str | None) -> set[str]:
        with as_user(basic, user) as c:
            r = c.get("/api/search", params={"name": "a"})
            assert r.status_code == 200, r.text
            return {row["repository"] for row in r.json()["results"]}

    assert search("gina") == {"pub/base", "team/app"}
    assert search("eve") == {"pub/base"}


def test_missing_project_is_refused_by_name(basic: WharfServer) -> None:
    with as_user(basic, "eve") as eve:
        r = eve.post("/v2/nowhere/app/blobs/uploads/")
        assert r.status_code == 403 and error(r)["code"] == "DENIED"
        assert "project nowhere does not exist" in error(r)["message"]
        # a read there finds nothing (a client checking blobs goes on to the refusal)
        r = eve.head("/v2/nowhere/app/blobs/sha256:" + "0" * 64)
        assert r.status_code == 404
        r = eve.get("/v2/nowhere/app/manifests/v1")
        assert r.status_code == 404 and error(r)["code"] == "NAME_UNKNOWN"
        assert error(r)["message"] == "project nowhere does not exist"
    with as_user(basic, None) as anon:  # anonymous callers are asked to log in
        assert anon.post("/v2/nowhere/app/blobs/uploads/").status_code == 401
    with as_user(basic, "admin") as admin:
        assert admin.get("/api/projects/nowhere").status_code == 404


def test_a_rule_giving_push_creates_the_project(basic: WharfServer) -> None:
    with as_user(basic, "ci") as ci:
        push_image(ci, "ci-tools/builder", "v1", [b"ci layer"])
        assert ci.get("/v2/ci-tools/builder/manifests/v1").status_code == 200
    with as_user(basic, "admin") as admin:
        made = admin.get("/api/projects/ci-tools").json()
    assert made["owner"] == "ci" and made["public"] is False
    assert made["members"][0] | {"added_at": None} == {
        "kind": "user",
        "name": "ci",
        "role": "owner",
        "added_by": "ci",
        "added_at": None,
    }


# -- /api/projects ------------------------------------------------------------------


def test_owner_manages_members_others_cannot(basic: WharfServer) -> None:
    path = "/api/projects/team/members/user/eve"
    for user in ("mary", "dave", "gina"):
        with as_user(basic, user) as c:
            r = c.put(path, json={"role": "guest"})
            assert r.status_code == 403 and error(r)["code"] == "DENIED", user
    with as_user(basic, "eve") as eve:
        assert eve.put(path, json={"role": "guest"}).status_code == 404  # cannot see team
    with as_user(basic, None) as anon:
        assert anon.put(path, json={"role": "guest"}).status_code == 401
    with as_user(basic, "olga") as olga:
        assert olga.put(path, json={"role": "guest"}).status_code == 201
    with as_user(basic, "eve") as eve:  # at once: this worker reloaded its copy
        assert eve.get("/v2/team/app/manifests/v1").status_code == 200
        assert eve.post("/v2/team/app/blobs/uploads/").status_code == 403
    with as_user(basic, "olga") as olga:
        assert olga.put(path, json={"role": "developer"}).status_code == 200
        members = olga.get("/api/projects/team/members").json()["members"]
        assert {"kind": "user", "name": "eve", "role": "developer"}.items() <= next(
            m for m in members if m["name"] == "eve"
        ).items()
        assert olga.delete(path).status_code == 204
        assert olga.delete(path).status_code == 404
    with as_user(basic, "eve") as eve:
        assert eve.get("/v2/team/app/manifests/v1").status_code == 403


def test_owners_set_the_quota_members_see_it(basic: WharfServer) -> None:
    path = "/api/projects/team/quota"
    with as_user(basic, "olga") as olga:  # the owner
        r = olga.put(path, json={"bytes": 10 * 1024**3})
        assert r.status_code == 200 and r.json()["quota"] == 10 * 1024**3, r.text
    for user in ("mary", "dave", "gina"):  # members see the quota and the usage
        with as_user(basic, user) as c:
            assert c.get(path).json()["quota"] == 10 * 1024**3, user
            assert c.get("/api/projects/team/usage").json()["bytes"] > 0, user
            r = c.put(path, json={"bytes": 1})
            assert r.status_code == 403 and error(r)["code"] == "DENIED", user
            assert "not an owner of project team" in error(r)["message"]
    with as_user(basic, "eve") as eve:  # not a member
        r = eve.get("/api/projects/team/usage")
        assert r.status_code == 403 and error(r)["code"] == "DENIED"
    with as_user(basic, None) as anon:
        assert anon.get(path).status_code == 401
    with as_user(basic, "admin") as admin:
        assert admin.get(path).json()["quota"] == 10 * 1024**3  # nothing changed
        assert admin.put(path, json={"bytes": None}).json()["quota"] is None


def test_last_owner_stays(basic: WharfServer) -> None:
    with as_user(basic, "olga") as olga:
        # admin created team, so admin is an owner too: without it olga is the last
        assert olga.delete("/api/projects/team/members/user/admin").status_code == 204
        r = olga.delete("/api/projects/team/members/user/olga")
        assert r.status_code == 409 and error(r)["code"] == "LAST_OWNER"
        r = olga.put("/api/projects/team/members/user/olga", json={"role": "guest"})
        assert r.status_code == 409
        assert olga.get("/v2/team/app/manifests/v1").status_code == 200  # still owner


def test_bad_requests_list_every_problem_and_change_nothing(basic: WharfServer) -> None:
    with as_user(basic, "admin") as admin:
        r = admin.post("/api/projects", json={"name": "Bad/Name", "public": "yes", "extra": 1})
        assert r.status_code == 400 and error(r)["code"] == "PROJECT_INVALID"
        assert set(error(r)["detail"]) == {"name", "public", "extra"}
        r = admin.post("/api/projects", content=b"[1]")
        assert r.status_code == 400 and "JSON object" in error(r)["message"]
        r = admin.post(
            "/api/projects/team/members", json={"kind": "robot", "name": "", "role": "x"}
        )
        assert r.status_code == 400 and set(error(r)["detail"]) == {"kind", "name", "role"}
        r = admin.patch("/api/projects/team", json={"public": 3, "owner": "x"})
        assert set(error(r)["detail"]) == {"public", "owner"}
        assert admin.post("/api/projects", json={"name": "team"}).status_code == 409
        team = admin.get("/api/projects/team").json()
        assert team["public"] is False and team["description"] == "the team"
        assert "bad" not in {p["name"] for p in admin.get("/api/projects").json()["projects"]}


def test_create_update_delete(basic: WharfServer) -> None:
    with as_user(basic, "eve") as eve:  # selfservice is off here
        r = eve.post("/api/projects", json={"name": "eves"})
        assert r.status_code == 403 and "projects.selfservice" in error(r)["message"]
    with as_user(basic, "admin") as admin:
        made = admin.post("/api/projects", json={"name": "tmp-proj"}).json()
        assert [(m["name"], m["role"]) for m in made["members"]] == [("admin", "owner")]
        push_image(admin, "tmp-proj/app", "v1", [b"tmp layer"])
        r = admin.delete("/api/projects/tmp-proj")
        assert r.status_code == 409 and error(r)["code"] == "PROJECT_NOT_EMPTY"
        assert error(r)["detail"]["repositories"] == 1
        digest = admin.head("/v2/tmp-proj/app/manifests/v1").headers["docker-content-digest"]
        assert admin.delete(f"/v2/tmp-proj/app/manifests/{digest}").status_code == 202
        r = admin.patch("/api/projects/tmp-proj", json={"public": True, "description": "x"})
        assert r.status_code == 200 and r.json()["public"] is True
        assert admin.delete("/api/projects/tmp-proj").status_code == 204
        assert admin.get("/api/projects/tmp-proj").status_code == 404
        r = admin.delete("/api/projects/library")
        assert r.status_code == 400 and "default project" in error(r)["message"]


def test_forced_delete_deletes_the_manifests_first(basic: WharfServer) -> None:
    with as_user(basic, "admin") as admin:
        assert admin.post("/api/projects", json={"name": "doomed"}).status_code == 201
        r = admin.put("/api/projects/doomed/members/user/dave", json={"role": "owner"})
        assert r.status_code == 201
    with as_user(basic, "dave") as dave:  # an owner
        push_image(dave, "doomed/a", "v1", [b"doomed a"])
        push_image(dave, "doomed/a", "v2", [b"doomed a2"])
        push_image(dave, "doomed/b/c", "v1", [b"doomed c"])
        assert dave.delete("/api/projects/doomed").status_code == 409
        assert dave.delete("/api/projects/doomed", params={"force": "true"}).status_code == 204
        assert dave.get("/api/projects/doomed").status_code == 404
        assert dave.get("/v2/doomed/a/manifests/v1").status_code == 404  # no project
    with as_user(basic, "admin") as admin:
        assert admin.get("/v2/doomed/a/manifests/v1").status_code == 404
        assert admin.get("/v2/doomed/b/c/manifests/v1").status_code == 404
        assert admin.get("/v2/team/app/manifests/v1").status_code == 200  # others kept


def test_listing_pages_and_visibility(basic: WharfServer) -> None:
    with as_user(basic, "admin") as admin:
        names = [p["name"] for p in admin.get("/api/projects").json()["projects"]]
        assert {"library", "pub", "team"} <= set(names) and names == sorted(names)
        r = admin.get("/api/projects", params={"n": 1})
        assert len(r.json()["projects"]) == 1 and 'rel="next"' in r.headers["link"]
        r2 = admin.get("/api/projects", params={"n": 1, "last": r.json()["projects"][0]["name"]})
        assert r2.json()["projects"][0]["name"] == names[1]
    with as_user(basic, "gus") as gus:  # a member through group devs
        assert [p["name"] for p in gus.get("/api/projects").json()["projects"]] == ["pub", "team"]
        assert gus.get("/api/projects/team").status_code == 200
    with as_user(basic, "eve") as eve:
        assert [p["name"] for p in eve.get("/api/projects").json()["projects"]] == ["pub"]
        assert eve.get("/api/projects/team").status_code == 404
    with as_user(basic, None) as anon:
        assert [p["name"] for p in anon.get("/api/projects").json()["projects"]] == ["pub"]
        assert anon.get("/api/projects/pub").status_code == 200
        assert anon.get("/api/projects/team").status_code == 401


# -- token mode ---------------------------------------------------------------------


def test_role_matrix_token(token: WharfServer) -> None:
    push_scope = "repository:team/app:pull,push,delete"
    granted = {}
    for user in (*ROLES, "gus", "eve", None):
        with token.client(auth=(user, USERS[user]) if user else None) as c:
            r = c.get("/token", params={"service": "wharf-test", "scope": push_scope})
            granted[user] = r.json().get("scope", "")
    assert granted == {
        "olga": "repository:team/app:delete,pull,push",
        "mary": "repository:team/app:delete,pull,push",
        "dave": "repository:team/app:pull,push",
        "gus": "repository:team/app:pull,push",
        "gina": "repository:team/app:pull",
        "eve": "",
        None: "",
    }
    with bearer(token, "dave", push_scope) as dave:
        push_image(dave, "team/app", "by-dave", [b"dave token layer"])
        assert dave.delete("/v2/team/app/manifests/by-dave").status_code == 401
    with bearer(token, "mary", push_scope) as mary:
        assert mary.delete("/v2/team/app/manifests/by-dave").status_code == 202
    with bearer(token, None, "repository:pub/base:pull") as anon:
        assert anon.get("/v2/pub/base/manifests/v1").status_code == 200
    with bearer(token, None, "repository:team/app:pull") as anon:
        assert anon.get("/v2/team/app/manifests/v1").status_code == 401
    with bearer(token, "eve", "registry:catalog:*") as eve:
        assert eve.get("/v2/_catalog").json()["repositories"] == ["pub/base"]
    with bearer(token, "gina", "registry:catalog:*") as gina:
        assert gina.get("/v2/_catalog").json()["repositories"] == ["pub/base", "team/app"]


def test_missing_project_is_refused_by_name_token(token: WharfServer) -> None:
    with bearer(token, "eve", "repository:nowhere/app:pull,push") as eve:
        r = eve.post("/v2/nowhere/app/blobs/uploads/")
    assert r.status_code == 403 and "project nowhere does not exist" in error(r)["message"]
    with bearer(token, "ci", "repository:ci-x/app:pull,push") as ci:
        push_blob(ci, "ci-x/app", b"ci token blob")
    with as_user(token, "admin") as admin:
        assert admin.get("/api/projects/ci-x").json()["owner"] == "ci"


# -- self-service, open registries, other processes ----------------------------------


def test_selfservice(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "s", basic_config(tmp_path, selfservice=True)).start()
    try:
        with as_user(server, "eve") as eve:
            push_image(eve, "eve-stuff/app", "v1", [b"eve layer"])
            assert eve.get("/api/projects/eve-stuff").json()["owner"] == "eve"
            r = eve.post("/api/projects", json={"name": "eve-more", "public": True})
            assert r.status_code == 201 and r.json()["members"][0]["name"] == "eve"
        with as_user(server, "dave") as dave:  # eve's project is eve's
            assert dave.post("/v2/eve-stuff/app/blobs/uploads/").status_code == 403
            assert dave.get("/v2/eve-stuff/app/manifests/v1").status_code == 403
        with as_user(server, None) as anon:
            r = anon.post("/v2/anon-proj/app/blobs/uploads/")
            assert r.status_code == 401
            assert anon.post("/api/projects", json={"name": "anon-proj"}).status_code == 401
    finally:
        server.stop()


def test_open_registry_creates_projects_on_push(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "open").start()
    try:
        with server.client() as c:
            push_image(c, "team/app", "v1", [b"open layer"])
            push_image(c, "nginx", "v1", [b"top layer"])
            names = [p["name"] for p in c.get("/api/projects").json()["projects"]]
            assert names == ["library", "team"]
            team = c.get("/api/projects/team").json()
            assert team["owner"] is None and team["members"] == []
    finally:
        server.stop()


def test_another_process_sees_a_member_change_within_refresh(tmp_path: Path) -> None:
    config = basic_config(tmp_path, refresh="1s")
    a = WharfServer(tmp_path / "a", config).start()
    shared = {"storage": {"filesystem": {"rootdirectory": str(a.root)}}}  # and its database
    b = WharfServer(tmp_path / "b", _merge(basic_config(tmp_path, refresh="1s"), shared)).start()
    try:
        with as_user(a, "admin") as admin:
            assert admin.post("/api/projects", json={"name": "shared"}).status_code == 201
            push_image(admin, "shared/app", "v1", [b"shared layer"])
            r = admin.put("/api/projects/shared/members/user/eve", json={"role": "guest"})
            assert r.status_code == 201
        changed = time.monotonic()
        with as_user(b, "eve") as eve:
            while eve.get("/v2/shared/app/manifests/v1").status_code != 200:
                assert time.monotonic() - changed < 1 + 1.5, "not seen within refresh"
                time.sleep(0.05)
        with as_user(a, "admin") as admin:
            assert admin.delete("/api/projects/shared/members/user/eve").status_code == 204
        changed = time.monotonic()
        with as_user(b, "eve") as eve:
            while eve.get("/v2/shared/app/manifests/v1").status_code != 403:
                assert time.monotonic() - changed < 1 + 1.5, "removal not seen within refresh"
                time.sleep(0.05)
    finally:
        b.stop()
        a.stop()


def wharf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry.cli", *args, "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_changes_reach_a_running_server(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "s", basic_config(tmp_path, refresh="1s")).start()
    cfg = server.config_path
    try:
        with as_user(server, "admin") as admin:
            push_image(admin, "cli-proj/app", "v1", [b"cli layer"])
        done = wharf(cfg, "project", "member", "add", "cli-proj", "eve", "guest")
        assert done.returncode == 0, done.stderr
        assert "user eve is guest of project cli-proj" in done.stdout
        changed = time.monotonic()
        with as_user(server, "eve") as eve:
            while eve.get("/v2/cli-proj/app/manifests/v1").status_code != 200:
                assert time.monotonic() - changed < 2.5, "not seen within refresh"
                time.sleep(0.05)
        explained = wharf(cfg, "policy", "explain", "eve", "cli-proj/app")
        assert explained.returncode == 0, explained.stderr
        assert "eve on cli-proj/app: pull" in explained.stdout
        assert "role guest in project cli-proj (as user eve)" in explained.stdout
        shown = json.loads(wharf(cfg, "project", "show", "cli-proj", "--json").stdout)
        assert {(m["name"], m["role"]) for m in shown["members"]} == {
            ("admin", "owner"),
            ("eve", "guest"),
        }
        refused = wharf(cfg, "project", "delete", "cli-proj")
        assert refused.returncode == 1 and "holds 1 repositories" in refused.stderr
        bad = wharf(cfg, "project", "create", "Bad_Name")
        assert bad.returncode == 2 and "name:" in bad.stderr
        made = wharf(cfg, "project", "create", "from-cli", "--public", "--owner", "olga")
        assert made.returncode == 0, made.stderr
        again = wharf(cfg, "project", "create", "from-cli")
        assert again.returncode == 1 and "exists already" in again.stderr
        listed = wharf(cfg, "project", "list")
        assert "from-cli\tpublic" in listed.stdout and "cli-proj\tprivate" in listed.stdout
        last = wharf(cfg, "project", "member", "remove", "from-cli", "olga")
        assert last.returncode == 1 and "last owner" in last.stderr
    finally:
        server.stop()


def test_on_postgres_two_nodes(postgres: PostgresCluster, tmp_path: Path) -> None:
    """The store's SQL on PostgreSQL: create, members, the last owner, a project made by
    a push, a refused delete; a second node sees the member change within refresh."""
    shared = {
        "database": {"url": postgres.create_database()},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
    }
    a = WharfServer(tmp_path / "a", _merge(basic_config(tmp_path, refresh="1s"), shared)).start()
    b = WharfServer(tmp_path / "b", _merge(basic_config(tmp_path, refresh="1s"), shared)).start()
    try:
        with as_user(a, "ci") as ci:
            push_image(ci, "ci-pg/app", "v1", [b"pg layer"])
        with as_user(a, "ci") as ci:
            r = ci.delete("/api/projects/ci-pg/members/user/ci")
            assert r.status_code == 409 and error(r)["code"] == "LAST_OWNER"
            r = ci.put("/api/projects/ci-pg/members/group/devs", json={"role": "guest"})
            assert r.status_code == 201
            r = ci.delete("/api/projects/ci-pg")
            assert r.status_code == 409 and error(r)["code"] == "PROJECT_NOT_EMPTY"
        with as_user(a, "admin") as admin:
            assert admin.post("/api/projects", json={"name": "ci-pg"}).status_code == 409
            names = [p["name"] for p in admin.get("/api/projects").json()["projects"]]
            assert names == ["ci-pg", "library"]
        changed = time.monotonic()
        with as_user(b, "gus") as gus:  # group devs, on the other node
            while gus.get("/v2/ci-pg/app/manifests/v1").status_code != 200:
                assert time.monotonic() - changed < 2.5, "not seen within refresh"
                time.sleep(0.05)
    finally:
        b.stop()
        a.stop()


def test_ui_pages_show_what_roles_allow(basic: WharfServer) -> None:
    def page(user: str | None) -> str:
        with basic.client() as c:
            if user is not None:
                html = c.get("/ui/login").text
                token = re.search(r'name="csrf" value="([^"]+)"', html)
                assert token is not None
                form = {"csrf": token.group(1), "username": user, "password": USERS[user]}
                assert c.post("/ui/login", data=form).status_code == 303
            text: str = c.get("/ui/").text
            return text

    team, pub = "?name=team/app&amp;", "?name=pub/base&amp;"  # the links to them
    assert team in page("gina") and pub in page("gina")
    assert team not in page("eve") and pub in page("eve")
    assert team not in page(None) and pub in page(None)
