"""Starting search and the web UI: the index hook, ``/api/search`` and ``/ui``."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from registry.accounts.setup import AuthSetup
from registry.api.context import Services
from registry.meta.search import apply_change
from registry.search.api import PREFIX, SearchAPI
from registry.search.query import SearchService


def start_search(
    services: Services, mount: Callable[[str, ASGIApp], None], auth: AuthSetup | None
) -> None:
    """Keep the index current on every push and delete; serve the API and the UI."""
    from registry.ui.app import WebUI

    services.meta.add_hook(apply_change)
    search = SearchService(services.meta.db)
    mount(PREFIX, SearchAPI(search))
    mount("/ui", WebUI(services, search, auth))
