"""``/api/system`` (administrators): what ``wharf check`` reaches, from the running
registry, with its version and effective configuration.

- ``GET /api/system``: ``{"version", "checks": [{"check", "target", "status",
  "detail"}], "config": {...}}``: storage (a probe object written, read and deleted),
  the database and its schema revision, LDAP, the token key pair, notification
  endpoints, mirror upstreams and replication targets, each reached now; the settings
  with every credential hidden (as ``wharf config`` prints them).
"""

from __future__ import annotations

from importlib import metadata

from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.http import json_response
from registry.check import probes
from registry.config import Settings
from registry.config.redact import redact
from registry.errors import NotFound, Unsupported

PREFIX = "/api/system"


def version() -> str:
    try:
        return metadata.version("wharf")
    except metadata.PackageNotFoundError:  # run from a source tree not installed
        return "unknown"


class SystemAPI:
    """The ASGI app mounted at :data:`PREFIX`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "system"
        require_admin(scope)
        if scope["path"].rstrip("/") != PREFIX:
            raise NotFound(detail={"path": scope["path"][:300]})
        if scope["method"] not in ("GET", "HEAD"):
            raise Unsupported("use GET", headers={"Allow": "GET"})
        checks = await probes.everything(self.settings)
        body = {
            "version": version(),
            "checks": [c.as_json() for c in checks],
            "config": redact(self.settings.model_dump()),
        }
        await json_response(body, headers={"Cache-Control": "no-store"})(scope, receive, send)
