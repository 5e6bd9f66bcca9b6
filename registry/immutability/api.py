"""``/api/projects/NAME/immutable`` (JSON): a project's immutability rules.

- ``GET .../immutable``: ``{"project", "rules": [{"id", "project", "repository", "tag",
  "created_at", "created_by"}]}``
- ``POST .../immutable`` with ``{"repository": PATTERN, "tag": PATTERN}``: 201 and the rule
- ``DELETE .../immutable/ID``: 204

:class:`ImmutabilityAPI` answers only these paths (:func:`handles`); the app mounts it
for them before the projects API, which serves the rest of ``/api/projects``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import caller_of, require_admin
from registry.api.bodies import read_capped
from registry.api.http import empty, json_response
from registry.errors import NotFound, Unsupported
from registry.immutability.errors import ImmutableRuleInvalid, ImmutableRuleUnknown
from registry.immutability.rules import RuleProblems, check_rule
from registry.immutability.service import ImmutabilityService

PREFIX = "/api/projects"
MAX_BODY = 4096
_PATH = re.compile(r"^/api/projects/([^/]+)/immutable(?:/([^/]*))?/?$")

# (request scope, project, write): returns if the caller may list (write False) or
# create and remove (write True) the project's rules, else raises an OCI error
Access = Callable[[Scope, str, bool], Awaitable[None]]


def handles(path: str) -> bool:
    """Is ``path`` one of this API's (``/api/projects/NAME/immutable[/ID]``)?"""
    return _PATH.match(path) is not None


async def admins_only(scope: Scope, _project: str, _write: bool) -> None:
    """Without projects' roles: system administrators only."""
    require_admin(scope)


def _rule_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise ImmutableRuleUnknown(
            "a rule is named by its id, a whole number", detail={"id": text[:100]}
        )
    return int(text)


class ImmutabilityAPI:
    """The ASGI app of the rules' paths."""

    def __init__(self, service: ImmutabilityService, access: Access = admins_only) -> None:
        self.service = service
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "immutability"
        found = _PATH.match(scope["path"])
        if found is None:
            raise NotFound(detail={"path": scope["path"][:300]})
        project, rule = unquote(found.group(1)), found.group(2)
        method = scope["method"]
        caller = caller_of(scope)
        by = caller.name if caller is not None else None
        if rule:
            if method != "DELETE":
                raise Unsupported("use DELETE", headers={"Allow": "DELETE"})
            await self.access(scope, project, True)
            await self.service.remove(project, _rule_id(rule), by)
            response = empty(204)
        elif method in ("GET", "HEAD"):
            await self.access(scope, project, False)
            rules = await self.service.rules(project)
            response = json_response({"project": project, "rules": [r.as_json() for r in rules]})
        elif method == "POST":
            await self.access(scope, project, True)
            body = await read_capped(
                Request(scope, receive).stream(),
                MAX_BODY,
                lambda: ImmutableRuleInvalid("request body too large"),
            )
            try:
                data = json.loads(body)
            except ValueError:
                raise ImmutableRuleInvalid(
                    'the body must be a JSON object: {"repository": ..., "tag": ...}',
                    detail={"body": "not JSON"},
                ) from None
            try:
                repository, tag = check_rule(data)
            except RuleProblems as e:
                raise ImmutableRuleInvalid(str(e), detail=e.problems) from None
            made = await self.service.add(project, repository, tag, by)
            response = json_response(made.as_json(), 201)
        else:
            raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        await response(scope, receive, send)
