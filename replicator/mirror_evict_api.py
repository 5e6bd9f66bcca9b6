"""``/api/mirror`` (issue #16, administrators only):

- ``POST /api/mirror/evict`` with an optional JSON body ``{"dry_run": true}``: run the
  pull-through mirrors' eviction now (:class:`replicator.mirror_evict.Evictor`); 200 with
  what it evicted (or would): ``{"dry_run", "cached", "evicted", "evicted_by_age",
  "evicted_by_bytes", "bytes", "manifests": [{"repository", "digest", "reason",
  "pulled_at"}]}`` (the first 100 manifests). The bytes are reclaimed by the next GC.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.errors import InvalidParameter, NotFound, Unsupported
from replicator.mirror_evict import Evictor

PREFIX = "/api/mirror"
MAX_BODY = 4096


def dry_run_of(raw: bytes) -> bool:
    """The ``dry_run`` of a request body (absent or empty: false)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidParameter('the body must be a JSON object: {"dry_run": false}') from None
    if not isinstance(body, dict):
        raise InvalidParameter('the body must be a JSON object: {"dry_run": false}')
    unknown = sorted(set(body) - {"dry_run"})
    if unknown:
        raise InvalidParameter("unknown fields", detail={"fields": unknown[:20]})
    value = body.get("dry_run", False)
    if not isinstance(value, bool):
        raise InvalidParameter(
            "dry_run must be true or false", detail={"dry_run": str(value)[:100]}
        )
    return value


class MirrorAPI:
    """The ASGI app mounted at ``/api/mirror``."""

    def __init__(self, evictor: Evictor) -> None:
        self.evictor = evictor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "mirror"
        require_admin(scope)
        path: str = scope["path"].rstrip("/")
        if path != PREFIX + "/evict":
            raise NotFound(detail={"path": path[:300]})
        if scope["method"] != "POST":
            raise Unsupported(f"{scope['method']} is not allowed here")
        request = Request(scope, receive)
        raw = await read_capped(
            request.stream(), MAX_BODY, lambda: InvalidParameter("request body too large")
        )
        result = await self.evictor.run(dry_run_of(raw))
        await json_response(result.summary(), 200)(scope, receive, send)
