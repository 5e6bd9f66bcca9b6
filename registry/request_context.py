"""Who is asking, for the code below the HTTP layer (events, audit): a context variable.

The observe middleware sets it for each request; the auth middleware fills in the actor.
Outside a request (CLI, background tasks) it is None.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestInfo:
    """The request that caused a change: the ``request`` and ``actor`` of an event."""

    id: str
    addr: str
    host: str
    method: str
    useragent: str
    actor: str | None = None


current_request: ContextVar[RequestInfo | None] = ContextVar("wharf_request", default=None)
