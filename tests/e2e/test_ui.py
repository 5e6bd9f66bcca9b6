"""The web UI in a real headless Chromium (Debian's, driven by Playwright): sign in,
search by name and by a layer digest, open an image, delete a tag as a permitted user,
be refused as a reader. Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.browser import new_page, shot
from tests.support.oci import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
    push_blob,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

LAYER_1, LAYER_2, LAYER_3 = b"ui base layer" * 500, b"ui app layer" * 2000, b"ui v2 layer" * 10
SIGNATURE = "application/vnd.example.signature.v1+json"
HOSTILE = "<script>alert('x')</script>"


def _push(
    c: httpx.Client, repo: str, ref: str, body: dict[str, Any], media_type: str = OCI_MANIFEST
) -> str:
    data = json.dumps(body).encode()
    r = c.put(f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return digest_of(data)


def _image(c: httpx.Client, repo: str, ref: str, layers: list[bytes], **cfg: Any) -> str:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-11-20T08:30:00Z",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    for blob in [config, *layers]:
        push_blob(c, repo, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)} for x in layers
        ],
    }
    return _push(c, repo, ref, manifest)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("ui")
    # one worker: under load uvicorn's supervisor kills workers slow to start
    config = {**htpasswd_config(workdir), "http": {"workers": 1}}
    server = WharfServer(workdir / "server", config).start()
    with server.client(auth=("admin", PASSWORDS["admin"])) as c:
        v1 = _image(
            c,
            "team-a/app",
            "v1",
            [LAYER_1, LAYER_2],
            Entrypoint=["/usr/local/bin/app", "--config", "/etc/app.yml"],
            Env=["PATH=/usr/local/bin:/usr/bin", "APP_MODE=production"],
            Labels={"org.opencontainers.image.source": "https://git.example/app", "note": HOSTILE},
        )
        _image(c, "team-a/app", "v2", [LAYER_1, LAYER_3], Entrypoint=["/usr/local/bin/app"])
        _image(c, "team-a/app", "v3", [LAYER_3])
        _image(c, "public/base", "1.0", [LAYER_1], Cmd=["/bin/sh"])
        push_blob(c, "team-a/app", b"{}")
        push_blob(c, "team-a/app", b"signature bytes")
        size = len(c.get(f"/v2/team-a/app/manifests/{v1}").content)
        signature = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE,
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
            "layers": [
                {"mediaType": SIGNATURE, "digest": digest_of(b"signature bytes"), "size": 15}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": v1, "size": size},
        }
        _push(c, "team-a/app", digest_of(json.dumps(signature).encode()), signature)
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser)
    yield page
    page.context.close()


def sign_in(page: Page, server: WharfServer, user: str) -> None:
    page.goto(f"{server.url}/ui/")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_contain_text(f"Signed in as {user}")


def result_rows(page: Page) -> list[str]:
    rows = page.locator("table.results tbody tr")
    return [" ".join(rows.nth(i).locator("td").all_inner_texts()[:2]) for i in range(rows.count())]


def test_anonymous_sees_only_public(page: Page, registry: WharfServer) -> None:
    page.goto(f"{registry.url}/ui/")
    expect(page.get_by_role("heading", name="Find images")).to_be_visible()
    assert result_rows(page) == ["public/base 1.0"]
    expect(page.locator("header .who")).to_contain_text("Anonymous")
    shot(page, "01-anonymous-search")
    page.goto(f"{registry.url}/ui/image?name=team-a/app&ref=v1")
    expect(page.get_by_role("heading", name="Sign in required")).to_be_visible()


def test_sign_in_and_search_by_name(page: Page, registry: WharfServer) -> None:
    page.goto(f"{registry.url}/ui/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
    shot(page, "02-sign-in-refused")
    sign_in(page, registry, "alice")
    page.get_by_label("Repository name or digest").fill("app")
    page.get_by_label("Repository name or digest").press("Enter")  # keyboard only
    expect(page.locator("table.results")).to_be_visible()
    assert result_rows(page) == ["team-a/app v1", "team-a/app v2", "team-a/app v3"]
    shot(page, "03-search-by-name")


def test_search_by_layer_digest(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "alice")
    page.get_by_label("Repository name or digest").fill(digest_of(LAYER_2))
    page.get_by_role("button", name="Search").click()
    assert result_rows(page) == ["team-a/app v1"]
    page.get_by_label("Repository name or digest").fill(digest_of(LAYER_1))
    page.get_by_role("button", name="Search").click()
    # alice may pull team-a/* and public/*: both images with the shared layer
    assert result_rows(page) == ["public/base 1.0", "team-a/app v1", "team-a/app v2"]
    shot(page, "04-search-by-layer-digest")


def test_open_an_image(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "alice")
    page.goto(f"{registry.url}/ui/?q=team-a")
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("team-a/app:v1")
    expect(page.get_by_label("Pull")).to_have_value(f"docker pull {registry.host}/team-a/app:v1")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("/usr/local/bin/app --config /etc/app.yml")
    expect(facts).to_contain_text("linux/amd64")
    expect(facts).to_contain_text("Nov 20, 2026, 8:30:00\u202fAM UTC")  # created, per locale
    expect(page.locator("main")).to_contain_text("APP_MODE=production")
    expect(page.locator("main")).to_contain_text("https://git.example/app")
    # label values are shown as text, never run
    expect(page.get_by_role("cell", name=HOSTILE)).to_be_visible()
    layers = page.locator("section", has=page.get_by_role("heading", name="Layers"))
    expect(layers.locator("tbody tr")).to_have_count(2)
    expect(layers).to_contain_text(digest_of(LAYER_2))
    expect(layers).to_contain_text("23.4 KiB")  # 24,000 bytes
    referrers = page.locator("section", has=page.get_by_role("heading", name="Referrers"))
    expect(referrers).to_contain_text(SIGNATURE)
    shot(page, "05-image")


def test_delete_a_tag_as_permitted_user(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "alice")
    page.goto(f"{registry.url}/ui/repository?name=team-a/app")
    page.get_by_role("link", name="Delete tag v3").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete tag v3?")
    shot(page, "06-delete-confirmation")
    page.get_by_role("button", name="Delete tag v3").click()
    expect(page.get_by_role("status")).to_contain_text("Tag v3 deleted")
    tags = page.locator("table.results tbody tr td:first-child")
    expect(tags).to_have_text(["v1", "v2"])
    shot(page, "07-tag-deleted")
    with registry.client(auth=("alice", PASSWORDS["alice"])) as c:
        assert c.get("/v2/team-a/app/tags/list").json()["tags"] == ["v1", "v2"]


def test_reader_is_refused(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "bob")
    page.goto(f"{registry.url}/ui/repository?name=team-a/app")
    expect(page.locator("table.results")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Delete"))).to_have_count(0)
    page.goto(f"{registry.url}/ui/delete?name=team-a/app&tag=v1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("bob may not delete tags in team-a/app")
    shot(page, "08-reader-refused")
    # a POST straight from the signed-in browser (with the right CSRF token) is refused too
    page.goto(f"{registry.url}/ui/")
    csrf = page.locator("form[action='/ui/logout'] input[name=csrf]").get_attribute("value")
    r = page.request.post(
        f"{registry.url}/ui/delete", form={"csrf": csrf or "", "name": "team-a/app", "tag": "v1"}
    )
    assert r.status == 403
    page.goto(f"{registry.url}/ui/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    with registry.client(auth=("bob", PASSWORDS["bob"])) as c:
        assert "v1" in c.get("/v2/team-a/app/tags/list").json()["tags"]


def test_forms_need_the_csrf_token_and_cookie_is_safe(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "alice")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "wharf_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    r = page.request.post(
        f"{registry.url}/ui/delete", form={"csrf": "forged", "name": "team-a/app", "tag": "v1"}
    )
    assert r.status == 403 and "Form expired" in r.text()
    with registry.client(auth=("alice", PASSWORDS["alice"])) as c:
        assert "v1" in c.get("/v2/team-a/app/tags/list").json()["tags"]


def test_admin_overview_and_sign_out(page: Page, registry: WharfServer) -> None:
    sign_in(page, registry, "admin")
    page.get_by_role("link", name="Administration").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Administration")
    expect(page.locator("main")).to_contain_text("Indexed tags")
    shot(page, "09-admin")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("header .who")).to_contain_text("Anonymous")


def test_pages_in_simplified_chinese_and_the_switch(
    browser: Browser, registry: WharfServer
) -> None:
    # a browser set to Chinese gets the pages in Chinese; the switch's choice is remembered
    page = new_page(browser, locale="zh-CN")
    try:
        page.goto(f"{registry.url}/ui/")
        expect(page.get_by_role("heading", name="查找镜像")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        assert result_rows(page) == ["public/base 1.0"]
        shot(page, "zh-01-anonymous-search")
        page.get_by_role("link", name="登录").click()
        page.get_by_label("用户名").fill("alice")
        page.get_by_label("密码").fill("wrong")
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("alert")).to_have_text("用户名或密码错误。")
        page.get_by_label("用户名").fill("alice")
        page.get_by_label("密码").fill(PASSWORDS["alice"])
        page.get_by_role("button", name="登录").click()
        expect(page.locator("header .who")).to_contain_text("已登录：alice")  # noqa: RUF001
        page.goto(f"{registry.url}/ui/image?name=team-a/app&ref=v1")
        expect(page.get_by_label("拉取")).to_have_value(
            f"docker pull {registry.host}/team-a/app:v1"
        )
        facts = page.locator("dl.facts")
        expect(facts).to_contain_text("2026年11月20日 08:30:00 UTC")
        layers = page.locator("section", has=page.get_by_role("heading", name="镜像层"))
        expect(layers).to_contain_text("23.4 KiB")
        shot(page, "zh-02-image")
        page.goto(f"{registry.url}/ui/repository?name=team-a/app")
        expect(page.locator("main")).to_contain_text(re.compile(r"\d+ 个标签"))
        shot(page, "zh-03-repository")
        # the switch, from the keyboard: choose English, then the page and every later one
        page.get_by_label("语言").select_option("en")
        page.get_by_role("button", name="切换语言").press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("team-a/app")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("main")).to_contain_text(re.compile(r"\d+ tags?, \d+ manifests?"))
        page.goto(f"{registry.url}/ui/")
        expect(page.get_by_role("heading", name="Find images")).to_be_visible()
        shot(page, "zh-04-switched-to-english")
    finally:
        page.context.close()
