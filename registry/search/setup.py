"""Starting search: the facts a push reads, the index hook and ``/api/search``."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from registry.api.context import Services
from registry.search.api import PREFIX, SearchAPI
from registry.search.facts import details_for
from registry.search.query import SearchService
from registry.search.store_index import apply_change
from registry.service.facts import FactsReader


def facts_reader() -> FactsReader:
    """What a push reads for the index before its transaction (the manifest service
    takes it at construction; the index hook stores it)."""
    return details_for


def start_search(services: Services, mount: Callable[[str, ASGIApp], None]) -> SearchService:
    """Keep the index current on every push and delete; serve the API. Returns the
    service the web UI queries."""
    services.meta.add_hook(apply_change)
    search = SearchService(services.meta.db)
    mount(PREFIX, SearchAPI(search))
    return search
