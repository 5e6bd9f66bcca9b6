"""``/api/search``: the search API and the browse endpoints the web UI also uses (JSON).

- ``GET /api/search?name=&prefix=&tag=&digest=&label=k=v&annotation=k=v&mediaType=
  &artifactType=&platform=os/arch[/variant]&pushed_after=&pushed_before=&sort=&n=&cursor=``
- ``GET /api/search/repository?name=REPO``: the repository's tags (same paging)
- ``GET /api/search/image?name=REPO&reference=TAG|DIGEST``: one image's facts

Results are limited to the repositories the caller may pull.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.types import Receive, Scope, Send

from registry.api.access import caller_of, is_open, may
from registry.api.http import json_response
from registry.errors import (
    Denied,
    InvalidParameter,
    ManifestUnknown,
    NameUnknown,
    NotFound,
    Unauthorized,
    Unsupported,
)
from registry.search.query import Allowed, Params, SearchService, params_of, parse_query

PREFIX = "/api/search"
Answer = tuple[dict[str, Any], dict[str, str]]


def allowed_for(scope: Scope) -> Allowed | None:
    """What the caller of an ``/api/`` request may pull (None: everything)."""
    if is_open(scope):
        return None
    return lambda repository: may(scope, repository, "pull")


def _check_pull(scope: Scope, repository: str) -> None:
    if may(scope, repository, "pull"):
        return
    caller = caller_of(scope)
    if caller is None or caller.name is None:
        raise Unauthorized(detail=[{"type": "repository", "name": repository, "actions": ["pull"]}])
    raise Denied(detail=[{"type": "repository", "name": repository, "actions": ["pull"]}])


def _required(params: Params, key: str) -> str:
    value = params.get(key)
    if not value:
        raise InvalidParameter(f"the {key} parameter is required")
    return value


class SearchAPI:
    """The ASGI app mounted at ``/api/search``."""

    def __init__(self, service: SearchService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "search"
        if scope["method"] not in ("GET", "HEAD"):
            raise Unsupported(f"{scope['method']} is not allowed here")
        path: str = scope["path"].rstrip("/")
        params = params_of(scope.get("query_string", b""))
        if path == PREFIX:
            body, headers = await self._search(scope, params)
        elif path == PREFIX + "/repository":
            body, headers = await self._repository(scope, params)
        elif path == PREFIX + "/image":
            body, headers = await self._image(scope, params)
        else:
            raise NotFound(detail={"path": path[:300]})
        await json_response(body, headers=headers)(scope, receive, send)

    async def _search(self, scope: Scope, params: Params) -> Answer:
        query = parse_query(params)
        page = await self.service.search(query, allowed_for(scope))
        return _paged(scope, params, page.rows, page.next_cursor, "results")

    async def _repository(self, scope: Scope, params: Params) -> Answer:
        name = _required(params, "name")
        _check_pull(scope, name)
        counts = await self.service.repository(name)
        if counts is None:
            raise NameUnknown(detail={"name": name})
        query = parse_query(
            Params([(k, v) for k, v in params.items if k != "repository"] + [("repository", name)]),
            default_sort="tag",
        )
        page = await self.service.search(query, None)
        body, headers = _paged(scope, params, page.rows, page.next_cursor, "tags")
        return {"name": name, "counts": counts, **body}, headers

    async def _image(self, scope: Scope, params: Params) -> Answer:
        name = _required(params, "name")
        reference = _required(params, "reference")
        _check_pull(scope, name)
        found = await self.service.image(name, reference)
        if found is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference[:200]})
        return found, {}


def _paged(
    scope: Scope, params: Params, rows: list[dict[str, Any]], cursor: str | None, key: str
) -> Answer:
    headers: dict[str, str] = {}
    if cursor is not None:
        kept = [(k, v) for k, v in params.items if k != "cursor"] + [("cursor", cursor)]
        headers["Link"] = f'<{quote(scope["path"])}?{urlencode(kept)}>; rel="next"'
    return {key: rows, "next": cursor}, headers
