"""Token mode: the built-in token service and bearer checks, against a real server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.support.auth import PASSWORDS, start_token_server
from tests.support.oci import push_image
from tests.support.server import WharfServer


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_token_server(tmp_path_factory.mktemp("token"))
    with server.client() as c:
        token = _token(c, "admin", ["repository:team-a/app:pull,push", "repository:other/x:*"])
        c.headers["Authorization"] = f"Bearer {token}"
        push_image(c, "team-a/app", "v1", [b"a"])
        push_image(c, "other/x", "v1", [b"b"])
    yield server
    server.stop()


def _token(c: httpx.Client, user: str | None, scopes: list[str], **params: str) -> str:
    auth = (user, PASSWORDS[user]) if user else None
    r = c.get("/token", params={"service": "wharf-test", "scope": scopes, **params}, auth=auth)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_challenge_names_realm_service_and_scope(tok: WharfServer) -> None:
    with tok.client() as c:
        r = c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="http://{tok.host}/token",service="wharf-test"'
        )
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        r = c.put("/v2/team-a/app/manifests/v2", content=b"{}")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="http://{tok.host}/token",service="wharf-test",'
            'scope="repository:team-a/app:pull,push"'
        )
        r = c.get("/v2/_catalog")
        assert 'scope="registry:catalog:*"' in r.headers["www-authenticate"]


def test_token_response_and_header(tok: WharfServer) -> None:
    with tok.client() as c:
        r = c.get(
            "/token",
            params={"service": "wharf-test", "scope": "repository:team-a/app:pull,push"},
            auth=("alice", PASSWORDS["alice"]),
        )
    assert r.status_code == 200
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    assert "refresh_token" not in body
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    assert len(header["kid"]) == 59 and header["kid"].count(":") == 11
    assert len(header["x5c"]) == 1
    base64.b64decode(header["x5c"][0])
    claims = _claims(body["token"])
    assert claims["iss"] == "wharf-test-issuer"
    assert claims["aud"] == "wharf-test"
    assert claims["sub"] == "alice"
    assert claims["access"] == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}
    ]


def test_partial_grant_is_not_an_error(tok: WharfServer) -> None:
    with tok.client() as c:
        token = _token(c, "bob", ["repository:team-a/app:pull,push", "repository:other/x:delete"])
        assert _claims(token)["access"] == [
            {"type": "repository", "name": "team-a/app", "actions": ["pull"]}
        ]
        assert c.get("/v2/team-a/app/manifests/v1", headers=_bearer(token)).status_code == 200
        r = c.post("/v2/team-a/app/blobs/uploads/", headers=_bearer(token))
        assert r.status_code == 401
        assert r.headers["www-authenticate"].endswith(
            'scope="repository:team-a/app:pull,push",error="insufficient_scope"'
        )


def test_token_for_one_repository_does_not_open_another(tok: WharfServer) -> None:
    with tok.client() as c:
        token = _token(c, "admin", ["repository:team-a/app:pull"])
        assert c.get("/v2/team-a/app/manifests/v1", headers=_bearer(token)).status_code == 200
        r = c.get("/v2/other/x/manifests/v1", headers=_bearer(token))
        assert r.status_code == 401
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_anonymous_token_only_for_public(tok: WharfServer) -> None:
    with tok.client() as c:
        token = _token(c, None, ["repository:public/base:pull", "repository:team-a/app:pull"])
        claims = _claims(token)
        assert claims["sub"] == ""
        assert claims["access"] == [
            {"type": "repository", "name": "public/base", "actions": ["pull"]}
        ]
        assert c.get("/v2/", headers=_bearer(token)).status_code == 200


def test_bad_credentials_on_the_token_endpoint(tok: WharfServer) -> None:
    with tok.client() as c:
        r = c.get("/token", params={"service": "wharf-test"}, auth=("alice", "wrong"))
        assert r.status_code == 401
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        r = c.get("/token", params={"service": "another"})
        assert r.status_code == 400


def test_tampered_token_is_refused(tok: WharfServer) -> None:
    with tok.client() as c:
        token = _token(c, "bob", ["repository:team-a/app:pull"])
        head, _payload, sig = token.split(".")
        claims = _claims(token)
        claims["access"][0]["actions"] = ["pull", "push"]
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        r = c.post("/v2/team-a/app/blobs/uploads/", headers=_bearer(f"{head}.{forged}.{sig}"))
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        r = c.get("/v2/", headers=_bearer("not-a-jwt"))
        assert r.status_code == 401


def test_oauth_password_and_refresh_grants(tok: WharfServer) -> None:
    with tok.client() as c:
        r = c.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": PASSWORDS["alice"],
                "service": "wharf-test",
                "scope": "repository:team-a/app:pull",
                "client_id": "docker",
                "access_type": "offline",
            },
        )
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        assert _claims(r.json()["access_token"])["sub"] == "alice"
        # the refresh token is not an access token for the registry
        assert c.get("/v2/", headers=_bearer(refresh)).status_code == 401
        r = c.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "service": "wharf-test",
                "scope": "repository:team-a/app:pull,push",
                "client_id": "docker",
            },
        )
        assert r.status_code == 200, r.text
        access = _claims(r.json()["access_token"])["access"]
        assert access == [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]
        r = c.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": "bad"},
        )
        assert r.status_code == 401
        r = c.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
        assert r.status_code == 401
        r = c.post("/token", data={"grant_type": "client_credentials"})
        assert r.status_code == 400


def test_offline_token_on_get(tok: WharfServer) -> None:
    with tok.client() as c:
        r = c.get(
            "/token",
            params={"service": "wharf-test", "offline_token": "true"},
            auth=("bob", PASSWORDS["bob"]),
        )
        assert "refresh_token" in r.json()
        r = c.get("/token", params={"service": "wharf-test", "offline_token": "true"})
        assert "refresh_token" not in r.json()  # nobody to refresh for


def test_catalog_in_token_mode(tok: WharfServer) -> None:
    with tok.client() as c:
        admin = _token(c, "admin", ["registry:catalog:*"])
        assert _claims(admin)["access"] == [
            {"type": "registry", "name": "catalog", "actions": ["*"]}
        ]
        names = c.get("/v2/_catalog", headers=_bearer(admin)).json()["repositories"]
        assert {"team-a/app", "other/x"} <= set(names)
        alice = _token(c, "alice", ["registry:catalog:*"])
        assert _claims(alice)["access"] == []
        names = c.get("/v2/_catalog", headers=_bearer(alice)).json()["repositories"]
        assert names == ["team-a/app"]


def test_mount_needs_pull_on_the_source_in_the_token(tok: WharfServer) -> None:
    from tests.support.oci import push_blob

    with tok.client() as c:
        admin = _token(c, "admin", ["repository:other/x:pull,push"])
        c.headers["Authorization"] = f"Bearer {admin}"
        digest = push_blob(c, "other/x", b"mount me")
        del c.headers["Authorization"]
        params = {"mount": digest, "from": "other/x"}
        # admin may pull other/x, but this token does not say so: a plain upload starts
        narrow = _token(c, "admin", ["repository:team-a/app:pull,push"])
        r = c.post("/v2/team-a/app/blobs/uploads/", params=params, headers=_bearer(narrow))
        assert r.status_code == 202, r.text
        both = _token(c, "admin", ["repository:team-a/app:pull,push", "repository:other/x:pull"])
        r = c.post("/v2/team-a/app/blobs/uploads/", params=params, headers=_bearer(both))
        assert r.status_code == 201, r.text
