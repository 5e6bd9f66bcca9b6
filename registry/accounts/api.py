"""``/api/robots``: robot accounts, for administrators (``auth.policy.admins``).

- ``GET /api/robots``: the robots (never their secrets);
- ``POST /api/robots`` with ``{"name", "description", "groups", "expires"}``
  (``expires`` as ``30d``, ``12h`` or ``never``): 201 with the robot and its ``secret``,
  the only time the secret is shown;
- ``DELETE /api/robots/{name}`` (``robot$ci``, URL-encoded, or ``ci``): revoke, 204.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.accounts.errors import RobotConflict, RobotExists, RobotInvalid, RobotUnknown
from registry.accounts.robots import RobotAccounts
from registry.api.access import caller_of, require_admin
from registry.api.bodies import read_capped
from registry.api.http import empty, json_response
from registry.errors import Unsupported

log = logging.getLogger("wharf.auth")
PREFIX = "/api/robots"
MAX_BODY = 16 * 1024


class RobotsAPI:
    """The ASGI app mounted at :data:`PREFIX`."""

    def __init__(self, robots: RobotAccounts) -> None:
        self.robots = robots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "robots"
        require_admin(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        rest = path[len(PREFIX) :].strip("/")
        if not rest:
            if method == "GET":
                robots = await self.robots.all()
                response = json_response({"robots": [r.as_json() for r in robots]})
            elif method == "POST":
                response = await self._create(Request(scope, receive))
            else:
                raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        elif method == "DELETE":
            name = unquote(rest)
            if not await self.robots.revoke(name):
                raise RobotUnknown(detail={"name": name[:100]})
            log.info("robot %s revoked by %s", name[:100], _who(scope))
            response = empty(204)
        else:
            raise Unsupported("use DELETE", headers={"Allow": "DELETE"})
        await response(scope, receive, send)

    async def _create(self, request: Request) -> Any:
        body = await read_capped(
            request.stream(), MAX_BODY, lambda: RobotInvalid("request body too large")
        )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise RobotInvalid("the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise RobotInvalid("the body must be a JSON object")
        name, description = data.get("name"), data.get("description", "")
        groups, expires = data.get("groups", []), data.get("expires")
        if not isinstance(name, str) or not isinstance(description, str):
            raise RobotInvalid("name and description must be strings")
        if not isinstance(groups, list) or not (expires is None or isinstance(expires, str)):
            raise RobotInvalid("groups must be a list and expires a string such as 30d")
        try:
            made = await self.robots.create(
                name, description, groups, expires, created_by=_who(request.scope)
            )
        except RobotExists:
            raise RobotConflict(detail={"name": name[:100]}) from None
        except ValueError as e:
            raise RobotInvalid(str(e)) from None
        log.info("robot %s created by %s", made.robot.name, _who(request.scope))
        return json_response(
            {**made.robot.as_json(), "secret": made.secret},
            201,
            headers={"Cache-Control": "no-store"},
        )


def _who(scope: Scope) -> str | None:
    caller = caller_of(scope)
    return caller.name if caller is not None else None
