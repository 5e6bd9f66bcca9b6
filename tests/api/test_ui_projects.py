"""The projects' web pages over HTTP (issue #17): each role sees and may do in the
browser what the API lets it, and a forged form is refused by the API's own checks.
Users: olga owner, mary maintainer, dave developer, gina guest of private project team;
pub is public (tests/support/projects.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.projects import USERS, as_user, start_basic
from tests.support.server import WharfServer


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_basic(tmp_path_factory.mktemp("ui-projects"))
    yield server
    server.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@contextlib.contextmanager
def browser(server: WharfServer, user: str | None, language: str = "en") -> Iterator[httpx.Client]:
    """A cookie-keeping client signed in to the pages as ``user`` (None: anonymous)."""
    with server.client(headers={"Accept-Language": language}) as c:
        if user is not None:
            form = {"csrf": _csrf(c.get("/ui/login").text), "username": user}
            r = c.post("/ui/login", data={**form, "password": USERS[user], "next": "/ui/"})
            assert r.status_code == 303, r.text
        yield c


def post(c: httpx.Client, path: str, **form: str) -> httpx.Response:
    return c.post(path, data={"csrf": _csrf(c.get("/ui/projects").text), **form})


def members(server: WharfServer) -> dict[str, str]:
    with as_user(server, "admin") as admin:
        found = admin.get("/api/projects/team/members").json()["members"]
    return {m["name"]: m["role"] for m in found}


def test_the_list_shows_what_each_may_see_with_usage(basic: WharfServer) -> None:
    with browser(basic, None) as anonymous:
        page = anonymous.get("/ui/projects").text
        assert ">pub<" in page and ">team<" not in page  # private: members only
    with browser(basic, "gina") as guest:
        page = guest.get("/ui/projects").text
        assert ">pub<" in page and ">team<" in page
        assert re.search(r"[\d.]+ (B|KiB), no quota", page)  # usage is shown to members
    with browser(basic, "olga") as owner:
        r = post(owner, "/ui/project/quota", project="team", quota="1GiB")
        assert r.status_code == 303
        page = owner.get("/ui/projects").text
        assert 'max="1073741824"' in page and "of 1.0 GiB" in page  # a meter against the quota


def test_owner_manages_members_settings_quota_and_robots(basic: WharfServer) -> None:
    with browser(basic, "olga") as owner:
        page = owner.get("/ui/project", params={"name": "team"}).text
        assert "Add a member" in page and "Save settings" in page and "Robot accounts" in page
        assert "<dd>owner</dd>" in page
        r = post(owner, "/ui/project/member", project="team", kind="user", name="eve", role="guest")
        assert r.status_code == 303 and r.headers["location"] == "/ui/project?name=team&done=member"
        assert members(basic)["eve"] == "guest"
        args = {"project": "team", "kind": "user", "name": "eve", "existing": "1"}
        assert post(owner, "/ui/project/member", **args, role="developer").status_code == 303
        assert members(basic)["eve"] == "developer"
        r = post(owner, "/ui/project/member/remove", project="team", kind="user", name="eve")
        assert r.status_code == 303 and "eve" not in members(basic)
        # the API's refusal, with its words and every field's problem
        r = post(owner, "/ui/project/member", project="team", kind="robot", name="", role="emperor")
        assert r.status_code == 400 and "PROJECT_INVALID" in r.text
        assert "<code>role</code>" in r.text and "<code>kind</code>" in r.text
        assert members(basic)["olga"] == "owner" and "" not in members(basic)
        r = post(owner, "/ui/project/settings", project="team", description="renamed team")
        assert r.status_code == 303
        with as_user(basic, "admin") as admin:
            found = admin.get("/api/projects/team").json()
            assert found["description"] == "renamed team" and found["public"] is False
        r = post(owner, "/ui/project/quota", project="team", quota="lots")
        assert r.status_code == 400 and "such as 10GiB" in r.text
        with as_user(basic, "admin") as admin:
            assert admin.get("/api/projects/team/quota").json()["quota"] == 1024**3

        r = post(
            owner,
            "/ui/project/robot",
            project="team",
            name="deployer",
            repositories="app",
            **{"action-pull": "on"},
            expires="30d",
        )
        assert r.status_code == 201 and "shown this once" in r.text
        assert r.headers["cache-control"] == "no-store"
        user = re.search(r'id="robot-user" readonly value="([^"]+)"', r.text)
        secret = re.search(r'id="robot-secret" readonly value="([^"]+)"', r.text)
        assert user and secret and user.group(1) == "robot$team+deployer"
        with basic.client(auth=(user.group(1), secret.group(1))) as robot:
            assert robot.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]
        page = owner.get("/ui/project", params={"name": "team"}).text
        assert "robot$team+deployer" in page and secret.group(1) not in page  # never again
        r = post(owner, "/ui/project/robot/revoke", project="team", robot="robot$team+deployer")
        assert r.status_code == 303
        with basic.client(auth=(user.group(1), secret.group(1))) as robot:
            assert robot.get("/v2/team/app/tags/list").status_code == 401


def test_members_without_the_role_see_no_forms_and_are_refused(basic: WharfServer) -> None:
    with browser(basic, "dave") as developer:
        page = developer.get("/ui/project", params={"name": "team"}).text
        assert "<dd>developer</dd>" in page and "olga" in page
        assert "Add a member" not in page and "Save settings" not in page
        assert "Robot accounts" not in page  # maintainers and owners only
        # a form posted anyway: the API refuses, nothing changes
        r = post(
            developer, "/ui/project/member", project="team", kind="user", name="eve", role="owner"
        )
        assert r.status_code == 403 and "not an owner of project team" in r.text
        assert "eve" not in members(basic)
        r = post(developer, "/ui/project/quota", project="team", quota="")
        assert r.status_code == 403
    with browser(basic, "mary") as maintainer:
        page = maintainer.get("/ui/project", params={"name": "team"}).text
        assert "Robot accounts" in page and "Add a member" not in page
    with browser(basic, "gina", "zh-CN") as guest:
        r = post(guest, "/ui/project/settings", project="team", public="on")
        assert r.status_code == 403 and "未修改" in r.text  # the page in Chinese, the API's words
    with as_user(basic, "admin") as admin:
        assert admin.get("/api/projects/team").json()["public"] is False


def test_anonymous_and_strangers(basic: WharfServer) -> None:
    with browser(basic, None) as anonymous:
        r = anonymous.get("/ui/project", params={"name": "team"})
        assert r.status_code == 401 and "Sign in required" in r.text
        assert "New project" not in anonymous.get("/ui/projects").text
        page = anonymous.get("/ui/project", params={"name": "pub"}).text
        assert "public: anyone may pull" in page and "Add a member" not in page
    with browser(basic, "eve") as stranger:  # a user who is no member of team
        r = stranger.get("/ui/project", params={"name": "team"})
        assert r.status_code == 404
        # no self-service here: the API refuses to create
        r = post(stranger, "/ui/projects/create", name="eves")
        assert r.status_code == 403 and "only administrators may" in r.text
    with browser(basic, "admin") as admin:
        r = post(admin, "/ui/projects/create", name="made-in-ui", public="on")
        assert r.status_code == 303 and "made-in-ui" in r.headers["location"]
        page = admin.get("/ui/project", params={"name": "made-in-ui"}).text
        assert "<dd>owner</dd>" in page and "public: anyone may pull" in page


def test_forms_need_the_csrf_token(basic: WharfServer, tmp_path: Path) -> None:
    with browser(basic, "olga") as owner:
        r = owner.post(
            "/ui/project/member",
            data={
                "csrf": "forged",
                "project": "team",
                "kind": "user",
                "name": "eve",
                "role": "owner",
            },
        )
        assert r.status_code == 403 and "Form expired" in r.text
    assert "eve" not in members(basic)
