"""``/api/projects/NAME/robots``: a project's robot accounts (``robot$NAME+ROBOT``).

- ``GET .../robots``: ``{"robots": [...]}`` (never their secrets);
- ``POST .../robots`` with ``{"name", "permissions": [{"repositories", "actions"}],
  "expires", "description"}``: 201 with the robot and its ``secret``, the only time;
- ``GET .../robots/ROBOT`` (``ci`` or ``robot$NAME+ci``, URL-encoded): the robot;
- ``PATCH .../robots/ROBOT`` with ``{"permissions"}`` and/or ``{"description"}``;
- ``DELETE .../robots/ROBOT``: revoke, 204.

Mounted under the projects API's prefix for these paths only (:func:`handles`). Who may
is the ``access`` check given at construction (the projects feature's roles: the
project's maintainers and owners, and system administrators).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry.accounts.errors import (
    RobotConflict,
    RobotExists,
    RobotFieldsInvalid,
    RobotInvalid,
    RobotUnknown,
)
from registry.accounts.project_robots import ProjectRobots
from registry.accounts.store_project_robots import ProjectGone
from registry.api.access import caller_of
from registry.api.bodies import read_capped
from registry.api.http import empty, json_response
from registry.errors import NotFound, Unsupported

log = logging.getLogger("wharf.auth")
PREFIX = "/api/projects"
MAX_BODY = 64 * 1024
_PATH = re.compile(r"^/api/projects/([^/]+)/robots(?:/([^/]+))?/?$")

# (request scope, project): returns if the caller may manage the project's robots, else
# raises (401 Unauthorized, 403 Denied, 404 for a project it may not see or that is missing)
RobotAccess = Callable[[Scope, str], Awaitable[None]]


def handles(path: str) -> bool:
    """Is ``path`` (decoded) one of this API's?"""
    return _PATH.match(path) is not None


def _invalid(e: RobotFieldsInvalid) -> RobotInvalid:
    return RobotInvalid(str(e), detail=e.problems)


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_capped(
        request.stream(), MAX_BODY, lambda: RobotInvalid("request body too large")
    )
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise RobotInvalid("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise RobotInvalid("the body must be a JSON object")
    return data


class ProjectRobotsAPI:
    """The ASGI app of the project robots' paths."""

    def __init__(self, robots: ProjectRobots, access: RobotAccess) -> None:
        self.robots = robots
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "project-robots"
        found = _PATH.match(scope["path"])
        if found is None:
            raise NotFound(detail={"path": scope["path"][:300]})
        project, robot = found.group(1), found.group(2)
        await self.access(scope, project)
        request = Request(scope, receive)
        method: str = scope["method"]
        if robot is None:
            if method in ("GET", "HEAD"):
                robots = await self.robots.all(project)
                response = json_response({"robots": [r.as_json() for r in robots]})
            elif method == "POST":
                response = await self._create(request, project)
            else:
                raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        else:
            response = await self._robot(request, method, project, robot)
        await response(scope, receive, send)

    async def _create(self, request: Request, project: str) -> Response:
        data = await _json_object(request)
        who = _who(request.scope)
        try:
            made = await self.robots.create(project, data, who)
        except RobotFieldsInvalid as e:
            raise _invalid(e) from None
        except RobotExists:
            raise RobotConflict(detail={"name": str(data.get("name"))[:100]}) from None
        except ProjectGone:
            raise RobotUnknown(f"project {project} does not exist") from None
        log.info("robot %s created by %s", made.robot.name, who)
        return json_response(
            {**made.robot.as_json(), "secret": made.secret},
            201,
            headers={"Cache-Control": "no-store"},
        )

    async def _robot(self, request: Request, method: str, project: str, name: str) -> Response:
        unknown = RobotUnknown(detail={"project": project[:100], "name": name[:100]})
        if method in ("GET", "HEAD"):
            found = await self.robots.get(project, name)
            if found is None:
                raise unknown
            return json_response(found.as_json())
        if method == "PATCH":
            data = await _json_object(request)
            try:
                changed = await self.robots.update(project, name, data)
            except RobotFieldsInvalid as e:
                raise _invalid(e) from None
            if changed is None:
                raise unknown
            log.info("robot %s changed by %s: %s", changed.name, _who(request.scope), sorted(data))
            return json_response(changed.as_json())
        if method == "DELETE":
            if not await self.robots.revoke(project, name):
                raise unknown
            log.info("robot %s of %s revoked by %s", name[:100], project, _who(request.scope))
            return empty(204)
        raise Unsupported("use GET, PATCH or DELETE", headers={"Allow": "GET, PATCH, DELETE"})


def _who(scope: Scope) -> str | None:
    caller = caller_of(scope)
    return caller.name if caller is not None else None
