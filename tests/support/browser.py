"""Debian's Chromium driven by Playwright, for the web pages' tests (never `playwright
install`: the browser is the system's). Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def new_page(browser: Browser, locale: str = "en-US", width: int = 1280, height: int = 900) -> Page:
    """A page in a fresh context (its own cookies) speaking ``locale``."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
