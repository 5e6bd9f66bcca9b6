"""Fixtures for the end-to-end tests: the test images and the real clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.clients import Dockerd, Podman, Skopeo
from tests.support.images import ImageSet, build_images


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """The deterministic OCI layout (small, multilayer, multi, artifact, sbom), built once."""
    return build_images(tmp_path_factory.mktemp("images") / "oci")


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    client = Podman(tmp_path_factory.mktemp("podman"))
    yield client
    client.reset()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """One private dockerd for the whole session, stopped (by its PID) at the end."""
    daemon = Dockerd()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (tests/support/browser.py), one per test module.

    Not per session: Playwright's sync API keeps its event loop running in the main thread
    while it is open, and every asyncio test after it would then fail with "Runner.run()
    cannot be called from a running event loop".
    """
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
