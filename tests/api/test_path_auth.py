"""Every path is identified and authorized the same way whatever its spelling, and odd
``Authorization`` headers get a 401 (issue #13, items 1 and 4), against a real server."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config, start_token_server
from tests.support.oci import push_image
from tests.support.server import WharfServer

SECRET = "team-a/secret"  # alice (group team-a) and bob (pull everywhere) may pull it
PUBLIC = "public/base"  # anonymous callers may pull it


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("paths")
    server = WharfServer(workdir / "server", htpasswd_config(workdir)).start()
    with server.client(auth=("admin", PASSWORDS["admin"])) as admin:
        push_image(admin, SECRET, "v1", [b"secret layer"])
        push_image(admin, PUBLIC, "v1", [b"public layer"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_token_server(tmp_path_factory.mktemp("paths-token"))
    yield server
    server.stop()


def raw_get(
    server: WharfServer, target: str, authorization: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET with the request target sent exactly as written (no client normalization)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers: dict[str, str | bytes] = {}
        if authorization is not None:
            headers["Authorization"] = authorization
        conn.request("GET", target, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def basic_auth(user: str | None) -> bytes | None:
    if user is None:
        return None
    return b"Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode())


# one page and one API call, spelled every way a client or an attacker might
SPELLINGS = [
    "/ui?q=team",
    "/ui/?q=team",
    "/ui//?q=team",
    "/%75i?q=team",
    "/%75%69/?q=team",
    "/ui%2F?q=team",
    "//ui?q=team",
    "/ui/./?q=team",
    "/./ui?q=team",
    "/ui/search?q=team",
    "/api/search?name=team",
    "/api/search/?name=team",
    "/api//search?name=team",
    "/%61pi/search?name=team",
    "/api/search%2F?name=team",
    "/api/search/repository?name=team-a/secret",
    "/api/search/repository/?name=team-a/secret",
    "/%61pi/search/repository?name=team-a/secret",
]


@pytest.mark.parametrize("target", SPELLINGS)
@pytest.mark.parametrize("user", [None, "carol"])
def test_no_spelling_shows_a_private_repository(
    basic: WharfServer, target: str, user: str | None
) -> None:
    status, _, body = raw_get(basic, target, basic_auth(user))
    assert status < 500, body
    if status == 200:
        assert SECRET.encode() not in body, body[:300]
    else:  # a refusal may only echo the name asked for
        assert status in (401, 403, 404), (status, body[:300])
        assert b'"tags"' not in body and b"sha256:" not in body


@pytest.mark.parametrize("target", ["/ui?q=team", "/ui/?q=team", "/%75i?q=team"])
def test_a_member_sees_it_on_the_page(basic: WharfServer, target: str) -> None:
    status, _, body = raw_get(basic, target, basic_auth("alice"))
    assert status == 200
    assert SECRET.encode() in body


@pytest.mark.parametrize(
    "target", ["/api/search?name=team", "/api/search/?name=team", "/%61pi/search?name=team"]
)
def test_a_member_finds_it_through_the_api(basic: WharfServer, target: str) -> None:
    status, _, body = raw_get(basic, target, basic_auth("alice"))
    assert status == 200, body
    assert SECRET in [r["repository"] for r in json.loads(body)["results"]]


@pytest.mark.parametrize("target", ["/metrics", "/%6detrics", "/metrics?x=1"])
def test_metrics_need_an_administrator(basic: WharfServer, target: str) -> None:
    for user, want in ((None, 401), ("carol", 403), ("alice", 403)):
        status, _, body = raw_get(basic, target, basic_auth(user))
        assert status == want, (user, body)
        assert json.loads(body)["errors"][0]["code"] in ("UNAUTHORIZED", "DENIED")
    status, _, body = raw_get(basic, target, basic_auth("admin"))
    assert status == 200 and b"wharf_http_requests_total" in body


def test_metrics_name_no_repository_or_user(basic: WharfServer) -> None:
    text = httpx.get(basic.metrics_url).text
    assert "wharf_http_requests_total" in text
    for secret in ("team-a", SECRET, "alice", "carol", "admin"):
        assert secret not in text


def test_unknown_paths_are_404_not_open(basic: WharfServer) -> None:
    for target in ("/", "/uix", "/apix/search", "/v3/", "/debug/vars", "//metrics"):
        status, _, body = raw_get(basic, target)
        assert status == 404, (target, status)
        assert SECRET.encode() not in body


NON_ASCII = [
    b"Basic \xff\xfe\xfd",
    b"Basic " + base64.b64encode(b"\xff\xfe:\xfd"),  # base64 of bytes that are not UTF-8
    b"Basic \xc3\xa9l\xc3\xa8ve:mot",
    b"\xff\xff",
    b"Bearer \xe9\xe9\xe9",
    b"Bearer " + "ey\u00e9.ey.sig".encode(),
]


@pytest.mark.parametrize("header", NON_ASCII)
@pytest.mark.parametrize("target", ["/v2/", "/v2/public/base/tags/list", "/api/search", "/ui/"])
def test_non_ascii_authorization_is_401(basic: WharfServer, header: bytes, target: str) -> None:
    status, headers, body = raw_get(basic, target, header)
    assert status == 401, (status, body[:300])
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("header", NON_ASCII)
@pytest.mark.parametrize(
    "target", ["/v2/", "/token?service=wharf-test", "/api/search", "/ui/", "/metrics"]
)
def test_non_ascii_authorization_is_401_in_token_mode(
    token: WharfServer, header: bytes, target: str
) -> None:
    status, _, body = raw_get(token, target, header)
    assert status == 401, (status, body[:300])
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


EMPTY_BASIC = b"Basic Og=="  # ":" (what skopeo --no-creds sends)


def test_empty_basic_credentials_are_an_anonymous_caller(basic: WharfServer) -> None:
    status, _, body = raw_get(basic, f"/v2/{PUBLIC}/tags/list", EMPTY_BASIC)
    assert status == 200, body
    assert json.loads(body)["tags"] == ["v1"]
    status, headers, body = raw_get(basic, "/v2/", EMPTY_BASIC)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="wharf-test"'
    assert b"malformed" not in body
    status, _, body = raw_get(basic, f"/v2/{SECRET}/tags/list", EMPTY_BASIC)
    assert status == 401 and b"malformed" not in body


def test_empty_basic_credentials_get_an_anonymous_token(token: WharfServer) -> None:
    status, _, body = raw_get(
        token, "/token?service=wharf-test&scope=repository:public/x:pull", EMPTY_BASIC
    )
    assert status == 200, body
    assert json.loads(body)["token"]


def test_bad_credentials_change_nothing(basic: WharfServer) -> None:
    with basic.client(auth=("admin", PASSWORDS["admin"])) as admin, basic.client() as anon:
        before = admin.get("/v2/_catalog").json()
        for header in NON_ASCII:
            r = anon.put(
                f"/v2/{PUBLIC}/manifests/v2", headers={"Authorization": header}, content=b"{}"
            )
            assert r.status_code == 401
            r = anon.post(f"/v2/{PUBLIC}/blobs/uploads/", headers={"Authorization": header})
            assert r.status_code == 401
        assert admin.get("/v2/_catalog").json() == before
        assert admin.get(f"/v2/{PUBLIC}/tags/list").json()["tags"] == ["v1"]
