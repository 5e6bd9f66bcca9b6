"""Basic auth (htpasswd) and the access policy, against a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config, write_htpasswd
from tests.support.oci import push_blob, push_image
from tests.support.server import WharfServer


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("basic")
    server = WharfServer(workdir / "server", htpasswd_config(workdir)).start()
    admin = _as(server, "admin")
    push_image(admin, "team-a/app", "v1", [b"team-a layer"])
    push_image(admin, "team-a/secret", "v1", [b"secret layer"])
    push_image(admin, "public/base", "v1", [b"public layer"])
    push_image(admin, "other/thing", "v1", [b"other layer"])
    admin.close()
    yield server
    server.stop()


def _as(server: WharfServer, user: str | None) -> httpx.Client:
    auth = (user, PASSWORDS[user]) if user else None
    return server.client(auth=auth)


def _error(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


def test_base_asks_for_credentials(basic: WharfServer) -> None:
    with _as(basic, None) as anon:
        r = anon.get("/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="wharf-test"'
    assert _error(r) == "UNAUTHORIZED"
    with _as(basic, "carol") as carol:
        assert carol.get("/v2/").status_code == 200


def test_wrong_password_and_unknown_user(basic: WharfServer) -> None:
    for auth in (("alice", "nope"), ("mallory", "alice-pw")):
        with basic.client(auth=auth) as c:
            r = c.get("/v2/team-a/app/tags/list")
        assert r.status_code == 401, auth
        assert r.headers["www-authenticate"].startswith("Basic ")
        assert _error(r) == "UNAUTHORIZED"
    with basic.client(headers={"Authorization": "Basic !!!"}) as c:
        assert c.get("/v2/").status_code == 401


def test_team_member_pushes_to_own_team_only(basic: WharfServer) -> None:
    with _as(basic, "alice") as alice:
        push_image(alice, "team-a/new", "v1", [b"alice layer"])
        r = alice.post("/v2/other/thing/blobs/uploads/")
        assert r.status_code == 403
        assert _error(r) == "DENIED"
        assert r.json()["errors"][0]["detail"] == [
            {"type": "repository", "name": "other/thing", "actions": ["pull", "push"]}
        ]
        # the more specific rule narrows team-a/* to pull for team-a/secret
        assert alice.get("/v2/team-a/secret/manifests/v1").status_code == 200
        r = alice.put("/v2/team-a/secret/manifests/v2", content=b"{}")
        assert r.status_code == 403
        # nothing was written
        assert alice.get("/v2/team-a/secret/tags/list").json()["tags"] == ["v1"]
        # alice has no rule for other/*: not even a pull
        assert alice.get("/v2/other/thing/manifests/v1").status_code == 403


def test_read_only_user_cannot_push_or_delete(basic: WharfServer) -> None:
    with _as(basic, "bob") as bob:
        assert bob.get("/v2/other/thing/manifests/v1").status_code == 200
        assert bob.get("/v2/team-a/app/tags/list").status_code == 200
        assert bob.post("/v2/team-a/app/blobs/uploads/").status_code == 403
        assert bob.delete("/v2/team-a/app/manifests/v1").status_code == 403
    with _as(basic, "admin") as admin:
        assert admin.get("/v2/team-a/app/manifests/v1").status_code == 200


def test_anonymous_pull_of_public_repositories(basic: WharfServer) -> None:
    with _as(basic, None) as anon:
        assert anon.get("/v2/public/base/manifests/v1").status_code == 200
        assert anon.get("/v2/public/base/tags/list").json()["tags"] == ["v1"]
        r = anon.get("/v2/team-a/app/manifests/v1")
        assert r.status_code == 401  # anonymous: asked to log in, not told "denied"
        assert r.headers["www-authenticate"] == 'Basic realm="wharf-test"'
        r = anon.post("/v2/public/base/blobs/uploads/")
        assert r.status_code == 401
        # HEAD answers the status without a body
        assert anon.head("/v2/team-a/app/manifests/v1").status_code == 401


def test_catalog_lists_only_pullable_repositories(basic: WharfServer) -> None:
    with _as(basic, "alice") as alice:
        names = alice.get("/v2/_catalog").json()["repositories"]
    assert "team-a/app" in names and "team-a/secret" in names
    assert "public/base" in names  # what anonymous callers may pull, anyone may
    assert "other/thing" not in names
    with _as(basic, "carol") as carol:
        assert carol.get("/v2/_catalog").json()["repositories"] == ["public/base"]
    with _as(basic, None) as anon:
        assert anon.get("/v2/_catalog").json()["repositories"] == ["public/base"]
    with _as(basic, "admin") as admin:
        full = admin.get("/v2/_catalog").json()["repositories"]
    assert {"team-a/app", "team-a/secret", "public/base", "other/thing"} <= set(full)


def test_filtered_catalog_paginates(basic: WharfServer) -> None:
    with _as(basic, "alice") as alice:
        everything = alice.get("/v2/_catalog").json()["repositories"]
        seen: list[str] = []
        url = "/v2/_catalog?n=1"
        while url:
            r = alice.get(url)
            seen += r.json()["repositories"]
            link = r.headers.get("link")
            url = link[1 : link.index(">")] if link else ""
    assert seen == everything


def test_mount_needs_pull_on_the_source(basic: WharfServer) -> None:
    with _as(basic, "admin") as admin:
        digest = push_blob(admin, "other/thing", b"only in other")
    with _as(basic, "alice") as alice:
        r = alice.post(
            "/v2/team-a/app/blobs/uploads/", params={"mount": digest, "from": "other/thing"}
        )
        # not mounted: alice may not pull other/thing, so a plain upload starts instead
        assert r.status_code == 202, r.text
        assert alice.head(f"/v2/team-a/app/blobs/{digest}").status_code == 404
    with _as(basic, "admin") as admin:
        r = admin.post(
            "/v2/team-a/app/blobs/uploads/", params={"mount": digest, "from": "other/thing"}
        )
        assert r.status_code == 201


def test_health_needs_no_credentials_metrics_an_administrator(basic: WharfServer) -> None:
    with _as(basic, None) as anon:
        assert anon.get("/healthz").status_code == 200
        r = anon.get("/metrics")
        assert r.status_code == 401 and _error(r) == "UNAUTHORIZED"
        assert r.headers["www-authenticate"] == 'Basic realm="wharf-test"'
    with _as(basic, "bob") as bob:
        r = bob.get("/metrics")
        assert r.status_code == 403 and _error(r) == "DENIED"
    with _as(basic, "admin") as admin:
        r = admin.get("/metrics")
        assert r.status_code == 200 and "wharf_http_requests_total" in r.text
    # the debug address (http.debug.addr) serves them without credentials
    r = httpx.get(basic.metrics_url)
    assert r.status_code == 200 and "wharf_http_requests_total" in r.text


def test_no_policy_lets_every_user_do_all(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    server = make_wharf(htpasswd_config(tmp_path, policy=None))
    with _as(server, "carol") as carol:
        push_image(carol, "any/where", "v1", [b"x"])
        assert carol.get("/v2/_catalog").json()["repositories"] == ["any/where"]
    with _as(server, None) as anon:
        assert anon.get("/v2/any/where/manifests/v1").status_code == 401


def test_htpasswd_changes_are_picked_up(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    server = make_wharf(htpasswd_config(tmp_path, policy=None))
    with _as(server, "carol") as carol:
        assert carol.get("/v2/").status_code == 200
    write_htpasswd(tmp_path / "htpasswd", {"carol": "new-pw", "dave": "dave-pw"})
    with _as(server, "carol") as carol:
        assert carol.get("/v2/").status_code == 401
    with server.client(auth=("carol", "new-pw")) as c:
        assert c.get("/v2/").status_code == 200
    with server.client(auth=("dave", "dave-pw")) as c:
        assert c.get("/v2/").status_code == 200


def test_failed_logins_are_counted_and_slowed(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    import time

    server = make_wharf(htpasswd_config(tmp_path, policy=None))
    with server.client(auth=("carol", "Wr0ng-Pa55")) as c:
        for _ in range(4):
            assert c.get("/v2/").status_code == 401
        start = time.monotonic()
        assert c.get("/v2/").status_code == 401  # 4 failures: waits 0.25 * 2
        assert time.monotonic() - start >= 0.45
    assert "failed login for user 'carol' from 127.0.0.1 (5 recent failures)" in server.log()
    assert "Wr0ng-Pa55" not in server.log()
    with _as(server, "carol") as carol:  # the right password still works, then clears
        assert carol.get("/v2/").status_code == 200
