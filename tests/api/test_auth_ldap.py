"""LDAP users against a real slapd: Basic mode (StartTLS, LDAPS, direct bind) and
token mode (with robot accounts), refusals, injection attempts, the group refresh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.auth import write_htpasswd, write_keys
from tests.support.oci import assert_error, push_image, unique_name
from tests.support.server import WharfServer, _merge
from tests.support.slapd import (
    LDAP_POLICY,
    ONE_WORKER,
    Slapd,
    ldap_settings,
    metric,
    password,
    token_config,
)

REALM = 'Basic realm="wharf-ldap"'


def _auth(user: str) -> tuple[str, str]:
    return (user, password(user))


@pytest.fixture(scope="module")
def basic(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """Basic auth with LDAP users only: search then bind over StartTLS."""
    workdir = tmp_path_factory.mktemp("ldap-basic")
    config = {
        "http": ONE_WORKER,
        "auth": {"ldap": ldap_settings(slapd, "starttls"), "policy": LDAP_POLICY},
    }
    server = WharfServer(workdir / "server", config).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """Token mode: LDAP users (search then bind over LDAPS, memberOf), htpasswd, robots."""
    workdir = tmp_path_factory.mktemp("ldap-token")
    server = WharfServer(workdir / "server")
    _merge(server.config, token_config(workdir, server.port, ldap_settings(slapd, "ldaps")))
    server.auth = True
    server.start()
    yield server
    server.stop()


def _token(c: httpx.Client, auth: tuple[str, str] | None, *scopes: str) -> str:
    r = c.get("/token", params={"service": "wharf-test", "scope": list(scopes)}, auth=auth)
    assert r.status_code == 200, r.text
    value: str = r.json()["token"]
    return value


def _access(token: str) -> list[dict[str, Any]]:
    claims = jwt.decode(token, options={"verify_signature": False})
    access: list[dict[str, Any]] = claims["access"]
    return access


# -- Basic mode ---------------------------------------------------------------------


def test_group_members_push_others_are_denied(basic: WharfServer) -> None:
    devs = f"devs/{unique_name('b').split('/')[1]}"
    ops = f"ops/{unique_name('b').split('/')[1]}"
    with basic.client(auth=_auth("bob")) as c:
        push_image(c, devs, "v1", [b"bob's layer"])  # bob is in devs (groupOfNames)
    with basic.client(auth=_auth("carol")) as c:
        push_image(c, ops, "v1", [b"carol's layer"])  # carol is in ops (posixGroup)
        assert c.get(f"/v2/{devs}/manifests/v1").status_code == 200  # any user may pull
        # carol is not in devs: refused, and nothing is written
        r = c.post(f"/v2/{devs}-carol/blobs/uploads/")
        assert_error(r, 403, "DENIED")
        r = c.put(f"/v2/{devs}/manifests/carol", content=b"{}")
        assert_error(r, 403, "DENIED")
    with basic.client(auth=_auth("bob")) as c:
        assert c.get(f"/v2/{devs}/tags/list").json()["tags"] == ["v1"]
        assert c.get(f"/v2/{devs}-carol/tags/list").status_code == 404
        assert_error(c.post(f"/v2/{ops}/blobs/uploads/"), 403, "DENIED")


def test_anonymous_push_gets_the_basic_challenge(basic: WharfServer) -> None:
    with basic.client() as c:
        r = c.post("/v2/devs/anon/blobs/uploads/")
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == REALM
        assert c.get("/v2/devs/anon/tags/list", auth=_auth("bob")).status_code == 404


@pytest.mark.parametrize(
    "user,secret",
    [
        ("alice", "wrong"),
        ("alice", ""),  # an empty password would be an anonymous bind
        ("*)(uid=*", "alicepw"),  # LDAP injection: matches nobody
        ("*", "alicepw"),
        ("alice)(|(uid=*", "alicepw"),
        ("ALICE*", "alicepw"),
        ("uid=alice,ou=people,dc=example,dc=org", "alicepw"),
        ("nobody", "nobodypw"),
    ],
)
def test_bad_credentials_are_refused(basic: WharfServer, user: str, secret: str) -> None:
    with basic.client() as c:
        r = c.get("/v2/", auth=(user, secret))
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == REALM
        # a good login clears the failure count of this address (no slow-down later)
        assert c.get("/v2/", auth=_auth("bob")).status_code == 200
    assert "alicepw" not in basic.log()


def test_logins_are_counted_and_cached(basic: WharfServer) -> None:
    before = metric(basic, "wharf_ldap_operations_total", operation="bind")
    ok = metric(basic, "wharf_logins_total", source="ldap", result="success")
    with basic.client(auth=_auth("alice")) as c:
        for _ in range(5):
            assert c.get("/v2/").status_code == 200
    # verified credentials are cached (for auth.ldap.refresh): at most one bind here
    assert metric(basic, "wharf_ldap_operations_total", operation="bind") - before <= 2
    assert metric(basic, "wharf_logins_total", source="ldap", result="success") == ok + 5
    assert metric(basic, "wharf_login_duration_seconds_count", source="ldap") > 0
    assert metric(basic, "wharf_logins_total", source="ldap", result="failure") > 0


def test_removal_from_a_group_takes_effect_within_the_refresh(
    basic: WharfServer, slapd: Slapd
) -> None:
    refresh = 2.0  # auth.ldap.refresh of the fixture
    repo = f"devs/{unique_name('r').split('/')[1]}"
    with basic.client(auth=_auth("dave")) as c:
        push_image(c, repo, "v1", [b"dave's layer"])
        searches = metric(basic, "wharf_ldap_operations_total", operation="search")
        # with no login at all, the background task reads dave's groups again
        time.sleep(refresh * 1.6)
        assert metric(basic, "wharf_ldap_operations_total", operation="search") > searches
        slapd.remove_member("devs", "dave")
        try:
            removed = time.monotonic()
            while True:
                r = c.post(f"/v2/{repo}/blobs/uploads/")
                if r.status_code == 403:
                    break
                assert r.status_code == 202, r.text
                assert time.monotonic() - removed < 2 * refresh + 1.5, "still a member"
                time.sleep(0.2)
            assert_error(r, 403, "DENIED")
            assert c.get(f"/v2/{repo}/manifests/v1").status_code == 200  # still a user
        finally:
            slapd.add_member("devs", "dave")


def test_direct_bind_over_ldaps(slapd: Slapd, make_wharf: Any, tmp_path: Path) -> None:
    ldap = ldap_settings(slapd, "direct", groupkinds=["memberOf"])
    server = make_wharf({"http": ONE_WORKER, "auth": {"ldap": ldap, "policy": LDAP_POLICY}})
    with server.client(auth=_auth("alice")) as c:
        push_image(c, "devs/direct", "v1", [b"direct"])
        assert c.get("/api/robots").status_code == 200  # alice is in admins
    with server.client() as c:
        assert c.get("/v2/", auth=("alice", "bobpw")).status_code == 401
        assert c.get("/v2/", auth=("*)(uid=*", "alicepw")).status_code == 401
        assert c.get("/api/robots", auth=_auth("bob")).status_code == 403


def test_a_wrong_ca_is_refused(slapd: Slapd, make_wharf: Any, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(write_keys(tmp_path / "k")[1].read_bytes())
    ldap = ldap_settings(slapd, "starttls", cacert=str(other))
    server = make_wharf({"http": ONE_WORKER, "auth": {"ldap": ldap, "policy": LDAP_POLICY}})
    with server.client() as c:
        r = c.get("/v2/", auth=_auth("alice"))
        assert_error(r, 401, "UNAUTHORIZED")
    assert metric(server, "wharf_logins_total", source="ldap", result="error") == 1
    assert "certificate verify failed" in server.log()


# -- token mode ---------------------------------------------------------------------


def test_token_for_ldap_users(token: WharfServer) -> None:
    repo = f"devs/{unique_name('t').split('/')[1]}"
    with token.client() as c:
        bob = _token(c, _auth("bob"), f"repository:{repo}:pull,push")
        assert _access(bob) == [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
        carol = _token(c, _auth("carol"), f"repository:{repo}:pull,push")
        assert _access(carol) == [{"type": "repository", "name": repo, "actions": ["pull"]}]
        c.headers["Authorization"] = f"Bearer {bob}"
        push_image(c, repo, "v1", [b"token layer"])
        r = c.get("/token", params={"service": "wharf-test"}, auth=("*)(uid=*", "alicepw"))
        assert r.status_code == 401
        # the POST form docker uses
        r = c.post(
            "/token",
            data={
                "grant_type": "password",
                "service": "wharf-test",
                "username": "carol",
                "password": "carolpw",
                "scope": "repository:ops/x:push",
                "access_type": "offline",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "repository:ops/x:push"
        assert "refresh_token" not in r.json()  # refresh tokens only for htpasswd users
        # htpasswd users still log in
        root = _token(c, ("root", "root-pw"), "repository:devs/x:pull")
        assert _access(root) == [{"type": "repository", "name": "devs/x", "actions": ["pull"]}]


def test_token_mode_pull_never_calls_ldap(token: WharfServer) -> None:
    repo = f"devs/{unique_name('p').split('/')[1]}"
    with token.client() as c:
        c.headers["Authorization"] = f"Bearer {_token(c, _auth('alice'), f'repository:{repo}:*')}"
        push_image(c, repo, "v1", [b"pull me"])
        c.headers["Authorization"] = f"Bearer {_token(c, _auth('bob'), f'repository:{repo}:pull')}"
        binds = metric(token, "wharf_ldap_operations_total", operation="bind")
        logins = metric(token, "wharf_logins_total", source="ldap", result="success")
        for _ in range(3):
            r = c.get(f"/v2/{repo}/manifests/v1")
            assert r.status_code == 200
            for layer in r.json()["layers"]:
                assert c.get(f"/v2/{repo}/blobs/{layer['digest']}").status_code == 200
        assert c.get("/v2/_catalog").status_code == 200
        assert metric(token, "wharf_ldap_operations_total", operation="bind") == binds
        assert metric(token, "wharf_logins_total", source="ldap", result="success") == logins


def test_robot_in_token_mode(token: WharfServer) -> None:
    with token.client() as c:
        r = c.post("/api/robots", json={"name": "ci", "groups": ["ci"]}, auth=_auth("alice"))
        assert r.status_code == 201, r.text
        robot = ("robot$ci", r.json()["secret"])
        t = _token(c, robot, "repository:ci/app:pull,push", "repository:devs/app:push")
        assert _access(t) == [{"type": "repository", "name": "ci/app", "actions": ["pull", "push"]}]
        assert jwt.decode(t, options={"verify_signature": False})["sub"] == "robot$ci"
        c.headers["Authorization"] = f"Bearer {t}"
        push_image(c, "ci/app", "v1", [b"robot"])
        del c.headers["Authorization"]
        assert c.delete("/api/robots/robot$ci", auth=_auth("alice")).status_code == 204
        r = c.get("/token", params={"service": "wharf-test"}, auth=robot)
        assert r.status_code == 401


def test_api_accepts_basic_and_anonymous_in_token_mode(token: WharfServer) -> None:
    with token.client() as c:
        assert c.get("/api/robots", auth=_auth("alice")).status_code == 200
        assert_error(c.get("/api/robots", auth=_auth("bob")), 403, "DENIED")
        assert_error(c.get("/api/robots"), 401, "UNAUTHORIZED")  # anonymous: not an admin
        r = c.get("/api/robots", auth=("alice", "wrong"))
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == REALM
        # a bearer token from the token service works there too
        t = _token(c, _auth("alice"), "repository:devs/x:pull")
        assert c.get("/api/robots", headers={"Authorization": f"Bearer {t}"}).status_code == 200
        # /v2/ still wants a bearer token
        r = c.get("/v2/", auth=_auth("alice"))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer ")


def test_directory_outage_and_recovery(make_wharf: Any, tmp_path: Path) -> None:
    own = Slapd(tmp_path / "slapd").start()  # its own: this test stops it
    try:
        auth = {
            "htpasswd": {
                "realm": "wharf-ldap",
                "path": str(write_htpasswd(tmp_path / "h", {"root": "root-pw"})),
            },
            "ldap": ldap_settings(own, "starttls", refresh="1h"),
            "policy": LDAP_POLICY,
        }
        server = make_wharf({"http": ONE_WORKER, "auth": auth})
        with server.client() as c:
            assert c.get("/v2/", auth=_auth("bob")).status_code == 200
            own.stop()
            # a login verified lately still works; a new one cannot be checked
            assert c.get("/v2/", auth=_auth("bob")).status_code == 200
            r = c.get("/v2/", auth=_auth("carol"))
            assert_error(r, 401, "UNAUTHORIZED")
            assert metric(server, "wharf_logins_total", source="ldap", result="error") == 1
            # htpasswd users are not affected
            assert c.get("/v2/", auth=("root", "root-pw")).status_code == 200
            own.start()
            # the pooled connections to the old process are replaced
            assert c.get("/v2/", auth=_auth("carol")).status_code == 200
            assert c.get("/v2/", auth=_auth("dave")).status_code == 200
    finally:
        own.stop()


def test_removal_in_token_mode_old_token_lives_until_it_expires(
    token: WharfServer, slapd: Slapd
) -> None:
    refresh = 2.0
    repo = f"devs/{unique_name('x').split('/')[1]}"
    scope = f"repository:{repo}:pull,push"
    with token.client() as c:
        old = _token(c, _auth("dave"), scope)
        assert _access(old)[0]["actions"] == ["pull", "push"]
        slapd.remove_member("devs", "dave")
        try:
            removed = time.monotonic()
            while _access(_token(c, _auth("dave"), scope))[0]["actions"] != ["pull"]:
                assert time.monotonic() - removed < 2 * refresh + 1.5, "still a member"
                time.sleep(0.2)
            # the token issued before the removal is valid until it expires (5 minutes)
            r = c.post(f"/v2/{repo}/blobs/uploads/", headers={"Authorization": f"Bearer {old}"})
            assert r.status_code == 202
        finally:
            slapd.add_member("devs", "dave")
