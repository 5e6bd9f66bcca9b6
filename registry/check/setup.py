"""Starting ``/api/system``: ``wharf check``'s probes from the running registry."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from registry.check.api import PREFIX, SystemAPI
from registry.config import Settings


def start_system(settings: Settings, mount: Callable[[str, ASGIApp], None]) -> None:
    """Mount ``/api/system`` (administrators only)."""
    mount(PREFIX, SystemAPI(settings))
