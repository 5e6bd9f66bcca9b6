"""Starting the web UI: ``/ui``, answered by the search service."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from registry.accounts.setup import AuthSetup
from registry.api.context import Services
from registry.search.query import SearchService


def start_ui(
    services: Services,
    search: SearchService,
    mount: Callable[[str, ASGIApp], None],
    auth: AuthSetup | None,
) -> None:
    """Serve the pages under ``/ui``."""
    from registry.ui.app import WebUI

    mount("/ui", WebUI(services, search, auth))
