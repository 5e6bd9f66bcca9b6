"""The projects' pages in a real Chromium (issue #17): an owner runs the project from the
browser (members, quota, a robot account with its secret shown once), in English and in
Chinese, from the keyboard; a developer, a guest and an anonymous visitor see only what
they may. Screenshots (desktop and a phone's width) go to test-artifacts/ui/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import new_page, shot
from tests.support.projects import USERS, as_user, start_basic
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = start_basic(tmp_path_factory.mktemp("ui-projects-e2e"))
    with as_user(server, "admin") as admin:
        assert admin.put("/api/projects/team/quota", json={"bytes": 4096}).status_code == 200
    yield server
    server.stop()


def signed_in(
    browser: Browser,
    server: WharfServer,
    user: str | None,
    locale: str = "en-US",
    width: int = 1280,
) -> Page:
    page = new_page(browser, locale, width=width)
    page.goto(f"{server.url}/ui/login")
    if user is not None:
        page.locator("#username").fill(user)
        page.locator("#password").fill(USERS[user])
        page.locator("#password").press("Enter")
        expect(page.locator("header .who")).to_contain_text(user)
    return page


def test_owner_runs_the_project(browser: Browser, basic: WharfServer) -> None:
    page = signed_in(browser, basic, "olga")
    try:
        page.get_by_role("link", name="Projects", exact=True).click()
        row = page.locator("tr", has=page.get_by_role("link", name="team", exact=True))
        expect(row).to_contain_text("private")
        expect(row.locator("meter")).to_have_attribute("max", "4096")
        shot(page, "p-01-projects-owner")
        page.get_by_role("link", name="team", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("team")
        # add a member with the keyboard only
        page.get_by_label("User or group name (LDAP groups too)").fill("eve")
        page.get_by_label("Role", exact=True).select_option("developer")
        page.get_by_role("button", name="Add member").press("Enter")
        expect(page.get_by_role("status")).to_have_text("Saved.")
        expect(page.get_by_role("cell", name="eve", exact=True)).to_have_count(1)
        # a robot account: the secret shown once
        page.locator("#robot-name").fill("ci")
        page.locator("#robot-repositories").fill("app")
        page.get_by_label("push").check()
        page.get_by_role("button", name="Create robot account").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Robot account created")
        secret = page.locator("#robot-secret").input_value()
        assert len(secret) >= 20
        shot(page, "p-02-robot-secret")
        with basic.client(auth=("robot$team+ci", secret)) as robot:
            assert robot.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]
        page.get_by_role("link", name="Back to the project").click()
        expect(page.locator("main")).to_contain_text("robot$team+ci")
        assert secret not in page.content()
        shot(page, "p-03-project-owner")
        page.get_by_role("button", name="Remove eve").click()
        expect(page.get_by_role("status")).to_have_text("Saved.")
        expect(page.get_by_role("cell", name="eve", exact=True)).to_have_count(0)
    finally:
        page.context.close()


def test_owner_in_chinese_and_at_a_phones_width(browser: Browser, basic: WharfServer) -> None:
    page = signed_in(browser, basic, "olga", "zh-CN", width=390)
    try:
        page.goto(f"{basic.url}/ui/project?name=team")
        expect(page.get_by_role("heading", name="成员", exact=True)).to_be_visible()
        expect(page.locator("main")).to_contain_text("所有者")
        expect(page.get_by_role("button", name="添加成员")).to_be_visible()
        expect(page.get_by_role("heading", name="机器人账号", exact=True)).to_be_visible()
        # nothing wider than the phone: the page scrolls down, not sideways
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, width
        shot(page, "p-04-project-owner-zh-phone")
        page.goto(f"{basic.url}/ui/projects")
        expect(page.locator("main")).to_contain_text("配额")
        shot(page, "p-05-projects-zh-phone")
    finally:
        page.context.close()


def test_developer_guest_and_anonymous_see_what_they_may(
    browser: Browser, basic: WharfServer
) -> None:
    for user, role, robots in (
        ("dave", "developer", False),
        ("gina", "guest", False),
        ("mary", "maintainer", True),
    ):
        page = signed_in(browser, basic, user)
        try:
            page.goto(f"{basic.url}/ui/project?name=team")
            expect(page.locator("dl.facts")).to_contain_text(role)
            expect(page.get_by_role("button", name="Add member")).to_have_count(0)
            expect(page.get_by_role("button", name="Save settings")).to_have_count(0)
            expect(page.get_by_role("heading", name="Robot accounts", exact=True)).to_have_count(
                1 if robots else 0
            )
            shot(page, f"p-06-project-{role}")
        finally:
            page.context.close()
    page = signed_in(browser, basic, None)
    try:
        page.goto(f"{basic.url}/ui/projects")
        expect(page.get_by_role("link", name="pub", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="team", exact=True)).to_have_count(0)
        expect(page.get_by_role("heading", name="New project")).to_have_count(0)
        page.goto(f"{basic.url}/ui/project?name=team")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in required")
        shot(page, "p-07-anonymous-refused")
    finally:
        page.context.close()
