"""The users' pages over HTTP (issue #17): an administrator manages local users, anyone
signs up where self-registration is on, a user changes their own password and sees their
projects; each through /api/users as the viewer, refused as the API refuses."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import PASSWORDS
from tests.support.server import WharfServer
from tests.support.users import ROOT, start_with_local_users


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    made = start_with_local_users(
        tmp_path_factory.mktemp("ui-accounts"), "basic", local={"selfregistration": True}
    )
    yield made
    made.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@contextlib.contextmanager
def browser(server: WharfServer, user: str | None, password: str = "") -> Iterator[httpx.Client]:
    with server.client(headers={"Accept-Language": "en"}) as c:
        if user is not None:
            form = {"csrf": _csrf(c.get("/ui/login").text), "username": user, "next": "/ui/"}
            r = c.post("/ui/login", data={**form, "password": password})
            assert r.status_code == 303, r.text
        yield c


def post(c: httpx.Client, path: str, **form: str) -> httpx.Response:
    return c.post(path, data={"csrf": _csrf(c.get("/ui/").text), **form})


def signs_in(server: WharfServer, user: str, password: str) -> bool:
    with server.client() as c:
        form = {"csrf": _csrf(c.get("/ui/login").text), "username": user, "next": "/ui/"}
        return c.post("/ui/login", data={**form, "password": password}).status_code == 303


def test_an_administrator_manages_local_users(server: WharfServer) -> None:
    with browser(server, *ROOT) as root:
        assert 'href="/ui/users"' in root.get("/ui/").text
        form = {"name": "lena", "email": "lena@example.org", "password": "lena-pass-1"}
        r = post(root, "/ui/users/create", **form, password2="something else")
        assert r.status_code == 400 and "The two passwords differ." in r.text
        r = post(root, "/ui/users/create", **form, password2="lena-pass-1")
        assert r.status_code == 303 and r.headers["location"] == "/ui/users?done=created"
        page = root.get("/ui/users").text
        assert "lena@example.org" in page and "Disable lena" in page
        r = post(root, "/ui/users/create", name="x y", password="short", password2="short")
        assert r.status_code == 400 and "<code>name</code>" in r.text  # every field's problem
        assert signs_in(server, "lena", "lena-pass-1")
        assert post(root, "/ui/users/state", name="lena", disabled="true").status_code == 303
        assert "Enable lena" in root.get("/ui/users").text
        assert not signs_in(server, "lena", "lena-pass-1")
        assert post(root, "/ui/users/state", name="lena", disabled="false").status_code == 303
        assert signs_in(server, "lena", "lena-pass-1")
        assert post(root, "/ui/users/delete", name="lena").status_code == 303
        assert not signs_in(server, "lena", "lena-pass-1")
    with browser(server, "alice", PASSWORDS["alice"]) as alice:  # not an administrator
        assert 'href="/ui/users"' not in alice.get("/ui/").text
        r = alice.get("/ui/users")
        assert r.status_code == 403 and "alice is not an administrator" in r.text
        # a form posted anyway: self-registration is on here, but never makes an administrator
        form = {"name": "mallory", "password": "m-pass-123", "password2": "m-pass-123"}
        r = post(alice, "/ui/users/create", **form, admin="on")
        assert r.status_code == 403 and "never makes an administrator" in r.text
        assert not signs_in(server, "mallory", "m-pass-123")
        r = post(alice, "/ui/users/state", name="root", disabled="true")
        assert r.status_code == 403 and signs_in(server, *ROOT)


def test_sign_up_then_my_account_and_my_password(server: WharfServer) -> None:
    with browser(server, None) as anonymous:
        assert 'href="/ui/signup"' in anonymous.get("/ui/").text
        form = {"name": "nina", "password": "nina-pass-1", "password2": "nina-pass-1"}
        r = post(anonymous, "/ui/signup", **form)
        assert r.status_code == 201 and "Your account is ready" in r.text
        r = post(anonymous, "/ui/signup", **form)  # taken
        assert r.status_code == 409
    with browser(server, "nina", "nina-pass-1") as nina:
        page = nina.get("/ui/account").text
        assert "<dd>nina</dd>" in page and "<dd>local</dd>" in page and "Change my password" in page
        assert "You are a member of no project." in page
        r = post(
            nina,
            "/ui/account/password",
            old_password="wrong-one",
            new_password="nina-pass-2",
            new_password2="nina-pass-2",
        )
        assert r.status_code == 400 and "is not your current password" in r.text
        assert not signs_in(server, "nina", "nina-pass-2")
        r = post(
            nina,
            "/ui/account/password",
            old_password="nina-pass-1",
            new_password="nina-pass-2",
            new_password2="nina-pass-2",
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/account?done=password"
    assert signs_in(server, "nina", "nina-pass-2") and not signs_in(server, "nina", "nina-pass-1")
    with browser(server, "alice", PASSWORDS["alice"]) as alice:  # htpasswd: no password here
        page = alice.get("/ui/account").text
        assert "<dd>htpasswd</dd>" in page and "Change my password" not in page
