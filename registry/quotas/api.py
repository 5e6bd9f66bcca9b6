"""``/api/projects/NAME/quota`` and ``/api/projects/NAME/usage`` (JSON).

- ``GET .../quota``: ``{"project", "quota"}`` (``quota``: bytes, or null for none)
- ``PUT .../quota`` with ``{"bytes": N}`` or ``{"bytes": null}``: set or remove it
  (administrators only for now: project owners once the projects feature has roles)
- ``GET .../usage``: ``{"project", "bytes", "shared_bytes", "quota", "percent",
  "repositories"}``

:class:`QuotaAPI` is one small ASGI app answering those two paths under :data:`PREFIX`;
the projects feature's API hands it the requests whose path ends in ``/quota`` or
``/usage`` (:func:`handles`); until then the quota feature mounts it at the prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.errors import NotFound, Unsupported
from registry.quotas.errors import QuotaInvalid
from registry.quotas.service import QuotaService
from registry.quotas.store import Usage
from registry.sizes import MAX_BYTES

PREFIX = "/api/projects"
MAX_BODY = 4096
_PATH = re.compile(r"^/api/projects/([^/]+)/(quota|usage)/?$")


def handles(path: str) -> bool:
    """Is ``path`` one of this API's (for the projects API to hand over)?"""
    return _PATH.match(path) is not None


def usage_json(found: Usage) -> dict[str, Any]:
    return {
        "project": found.project,
        "bytes": found.bytes,
        "shared_bytes": found.shared_bytes,
        "quota": found.quota,
        "percent": found.percent,
        "repositories": found.repositories,
    }


def quota_of(body: bytes) -> int | None:
    """The ``bytes`` of a PUT body: a whole number of bytes from 0, or null."""
    try:
        data = json.loads(body)
    except ValueError:
        raise QuotaInvalid('the body must be a JSON object: {"bytes": N or null}') from None
    if not isinstance(data, dict) or "bytes" not in data:
        raise QuotaInvalid('the body must be a JSON object: {"bytes": N or null}')
    value = data["bytes"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise QuotaInvalid(
            "bytes must be a whole number of bytes or null", detail={"bytes": str(value)[:100]}
        )
    if value < 0 or value > MAX_BYTES:
        raise QuotaInvalid(f"bytes must be between 0 and {MAX_BYTES}", detail={"bytes": value})
    return value


# (request scope, project, write): returns if the caller may read (write False) or set
# (write True) the project's quota and usage, else raises Unauthorized or Denied
Access = Callable[[Scope, str, bool], None]


def admins_only(scope: Scope, _project: str, _write: bool) -> None:
    """Without projects' roles: system administrators only."""
    require_admin(scope)


class QuotaAPI:
    """The ASGI app of the quota and usage paths."""

    def __init__(self, service: QuotaService, access: Access = admins_only) -> None:
        self.service = service
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "quotas"
        found = _PATH.match(scope["path"])
        if found is None:
            raise NotFound(detail={"path": scope["path"][:300]})
        project, what = unquote(found.group(1)), found.group(2)
        method = scope["method"]
        if what == "usage":
            if method not in ("GET", "HEAD"):
                raise Unsupported("use GET", headers={"Allow": "GET"})
            self.access(scope, project, False)
            response = json_response(usage_json(await self.service.usage(project)))
        elif method in ("GET", "HEAD"):
            self.access(scope, project, False)
            usage = await self.service.usage(project)
            response = json_response({"project": usage.project, "quota": usage.quota})
        elif method == "PUT":
            self.access(scope, project, True)
            request = Request(scope, receive)
            body = await read_capped(
                request.stream(), MAX_BODY, lambda: QuotaInvalid("request body too large")
            )
            usage = await self.service.set_quota(project, quota_of(body))
            response = json_response({"project": usage.project, "quota": usage.quota})
        else:
            raise Unsupported("use GET or PUT", headers={"Allow": "GET, PUT"})
        await response(scope, receive, send)
