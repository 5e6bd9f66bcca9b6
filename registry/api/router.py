"""Routes of the distribution API, matched on the raw (undecoded) path.

Matching the raw path means ``%2F`` or ``%2e%2e`` in a repository name never turns
into a slash or a ``..``: any percent sign in a name fails the name grammar.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry.api import blobs, listings, manifests, uploads
from registry.api.context import Services
from registry.content.names import check_name
from registry.errors import NotFound, Unsupported

Handler = Callable[..., Awaitable[Response]]


class Route:
    """A path pattern, a label for metrics and logs, and a handler per method."""

    def __init__(self, label: str, pattern: str, methods: dict[str, Handler]) -> None:
        self.label = label
        self.regex = re.compile(pattern)
        self.methods = methods


def _routes() -> list[Route]:
    name = r"(?P<name>.+)"
    return [
        Route("base", r"^/v2/?$", {"GET": listings.base, "HEAD": listings.base}),
        Route("catalog", r"^/v2/_catalog$", {"GET": listings.catalog}),
        Route("tags", rf"^/v2/{name}/tags/list$", {"GET": listings.tags_list}),
        Route(
            "manifests",
            rf"^/v2/{name}/manifests/(?P<reference>[^/]+)$",
            {
                "GET": manifests.get_manifest,
                "HEAD": manifests.get_manifest,
                "PUT": manifests.put_manifest,
                "DELETE": manifests.delete_manifest,
            },
        ),
        Route("uploads", rf"^/v2/{name}/blobs/uploads/?$", {"POST": uploads.start_upload}),
        Route(
            "upload",
            rf"^/v2/{name}/blobs/uploads/(?P<upload_id>[^/]+)$",
            {
                "GET": uploads.upload_status,
                "PATCH": uploads.patch_upload,
                "PUT": uploads.finish_upload,
                "DELETE": uploads.cancel_upload,
            },
        ),
        Route(
            "blobs",
            rf"^/v2/{name}/blobs/(?P<digest>[^/]+)$",
            {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
        ),
        Route(
            "referrers", rf"^/v2/{name}/referrers/(?P<digest>[^/]+)$", {"GET": listings.referrers}
        ),
    ]


class DistributionAPI:
    """The ``/v2/`` ASGI application."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.routes = _routes()

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                return route, m.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        found = self.match(path)
        if found is None:
            raise NotFound(detail={"path": path[:300]})
        route, params = found
        scope["wharf.route"] = route.label
        if "name" in params:
            check_name(params["name"])
            scope["wharf.repository"] = params["name"]
        handler = route.methods.get(scope["method"])
        if handler is None:
            raise Unsupported(
                f"method {scope['method']} is not allowed here",
                headers={"Allow": ", ".join(route.methods)},
            )
        kwargs: dict[str, Any] = params
        response = await handler(Request(scope, receive), self.services, **kwargs)
        await response(scope, receive, send)
