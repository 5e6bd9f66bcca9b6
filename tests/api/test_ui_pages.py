"""The web UI's pages over plain HTTP (no browser): an open registry, CSRF on forms,
cookies, headers, static files, and ``Secure`` cookies under TLS."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import htpasswd_config
from tests.support.clients import make_self_signed_cert
from tests.support.oci import push_image
from tests.support.server import WharfServer


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = WharfServer(tmp_path_factory.mktemp("ui-open"), {"http": {"workers": 1}}).start()
    with server.client() as c:
        push_image(c, "shop/web", "v1", [b"web layer"])
        push_image(c, "shop/web", "v2", [b"web layer 2"])
    yield server
    server.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_open_registry_pages(open_registry: WharfServer) -> None:
    with open_registry.client() as c:
        r = c.get("/ui/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "Open registry" in r.text and "shop/web" in r.text
        r = c.get("/ui/repository", params={"name": "shop/web"})
        assert r.status_code == 200 and ">v1<" in r.text and "Delete tag v2" in r.text
        r = c.get("/ui/image", params={"name": "shop/web", "ref": "v1"})
        assert f"docker pull {open_registry.host}/shop/web:v1" in r.text
        assert "nothing to sign in to" in c.get("/ui/login").text
        assert c.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
        assert c.get("/ui/static/nothing.js").status_code == 404
        assert c.get("/ui/nowhere").status_code == 404
        assert c.get("/ui/image", params={"name": "shop/web", "ref": "v9"}).status_code == 404
        assert c.get("/ui/", params={"q": "sha256:zz"}).status_code == 400  # said on the page


def test_delete_needs_confirmation_and_csrf(open_registry: WharfServer) -> None:
    with open_registry.client() as c:
        page = c.get("/ui/delete", params={"name": "shop/web", "tag": "v2"})
        assert page.status_code == 200 and "Delete tag v2?" in page.text
        token = _csrf(page.text)
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        form = {"name": "shop/web", "tag": "v2"}
        r = c.post("/ui/delete", data={**form, "csrf": "wrong"})
        assert r.status_code == 403
        with open_registry.client() as stranger:  # the token without its session cookie
            assert stranger.post("/ui/delete", data={**form, "csrf": token}).status_code == 403
        assert c.get("/v2/shop/web/tags/list").json()["tags"] == ["v1", "v2"]
        r = c.post("/ui/delete", data={**form, "csrf": token})
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/repository?name=shop%2Fweb&deleted=v2"
        assert c.get("/v2/shop/web/tags/list").json()["tags"] == ["v1"]
        assert c.post("/ui/delete", data={**form, "csrf": token}).status_code == 404


def test_pages_speak_the_browsers_language(open_registry: WharfServer) -> None:
    zh = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
    with open_registry.client() as c:
        r = c.get("/ui/", headers=zh)
        assert r.status_code == 200 and '<html lang="zh-CN">' in r.text
        assert "查找镜像" in r.text and "shop/web" in r.text and "Find images" not in r.text
        r = c.get("/ui/repository", params={"name": "shop/web"}, headers=zh)
        assert "删除标签 v1" in r.text  # a message with a value in it
        r = c.get("/ui/nowhere", headers=zh)
        assert r.status_code == 404 and "没有这个页面。" in r.text
        r = c.get("/ui/", headers={"Accept-Language": "zh-TW,fr;q=0.5"})  # neither spoken here
        assert '<html lang="en">' in r.text and "Find images" in r.text


def test_the_language_switch_is_remembered(open_registry: WharfServer) -> None:
    with open_registry.client() as c:
        token = _csrf(c.get("/ui/").text)
        back = "/ui/repository?name=shop%2Fweb"
        r = c.post("/ui/language", data={"csrf": token, "language": "zh_CN", "next": back})
        assert r.status_code == 303 and r.headers["location"] == back
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("wharf_lang=zh_CN;") and "Path=/ui" in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=31536000" in cookie
        # no Accept-Language, or an English one: the choice holds
        assert "查找镜像" in c.get("/ui/").text
        assert "查找镜像" in c.get("/ui/", headers={"Accept-Language": "en-US"}).text
        # a language not spoken here, a forged form: refused, the choice unchanged
        r = c.post("/ui/language", data={"csrf": token, "language": "tlh", "next": back})
        assert r.status_code == 400 and "没有语言 tlh。" in r.text
        assert "set-cookie" not in r.headers or "wharf_lang" not in r.headers["set-cookie"]
        r = c.post("/ui/language", data={"csrf": "forged", "language": "en"})
        assert r.status_code == 403 and "表单已过期" in r.text
        r = c.post("/ui/language", data={"csrf": token, "language": "en", "next": "//evil.example"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        assert "Find images" in c.get("/ui/").text


def test_sign_in_redirects_only_inside_the_ui(tmp_path: Path) -> None:
    config = {**htpasswd_config(tmp_path), "http": {"workers": 1}}
    server = WharfServer(tmp_path / "server", config).start()
    try:
        with server.client() as c:
            token = _csrf(c.get("/ui/login").text)
            form = {"csrf": token, "username": "alice", "password": "alice-pw"}
            r = c.post("/ui/login", data={**form, "next": "https://evil.example/"})
            assert r.status_code == 303 and r.headers["location"] == "/ui/"
            assert "Signed in as <strong>alice</strong>" in c.get("/ui/").text
            # the session's CSRF token changed at sign-in: the old one is refused
            r = c.post("/ui/logout", data={"csrf": token})
            assert r.status_code == 403
            r = c.post("/ui/logout", data={"csrf": _csrf(c.get("/ui/").text)})
            assert r.status_code == 303
            assert "Anonymous" in c.get("/ui/").text
    finally:
        server.stop()


def test_cookie_is_secure_under_tls(make_wharf: Callable[..., WharfServer], tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    server = make_wharf(
        {"http": {"workers": 1, "tls": {"certificate": str(cert), "key": str(key)}}}
    )
    context = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=server.url, verify=context) as c:
        r = c.get("/ui/login")
    assert r.status_code == 200
    assert "; Secure" in r.headers["set-cookie"]
