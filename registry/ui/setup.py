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
    api: ASGIApp | None = None,
) -> None:
    """Serve the pages under ``/ui``. ``api``: Wharf's own ``/api/`` mounts, which the
    projects' pages call in-process as the viewer (without it, no projects' pages)."""
    from registry.ui.app import WebUI

    mount("/ui", WebUI(services, search, auth, api))
