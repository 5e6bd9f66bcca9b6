"""``/api/projects``: projects and their members.

- ``GET /api/projects?n=&last=``: administrators see every project, others the public
  ones and those they (or one of their groups) are members of; cursor pages with a
  ``Link`` header;
- ``POST /api/projects`` ``{"name", "public", "description"}``: administrators, or any
  authenticated user with ``projects.selfservice``; the creator becomes an owner; 201;
- ``GET /api/projects/NAME``: the project with its members (members, public projects,
  administrators); ``PATCH`` ``{"public", "description"}`` (owners, administrators);
  ``DELETE`` (owners, administrators; refused with ``PROJECT_NOT_EMPTY`` while
  repositories in it hold manifests, unless ``?force=true``: their manifests are deleted
  first, through the core service);
- ``GET /api/projects/NAME/members``; ``POST`` ``{"kind", "name", "role"}``;
  ``PUT /api/projects/NAME/members/KIND/MEMBER`` ``{"role"}``; ``DELETE`` the same path
  (owners, administrators; the last owner cannot be removed or demoted).

Errors are OCI-format; ``PROJECT_INVALID`` lists every field's problem in ``detail``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from auth.policy import Identity
from registry.api.access import caller_of, is_open
from registry.api.bodies import read_capped
from registry.api.http import empty, fetch_limit, json_response, page, pagination
from registry.errors import Denied, Unauthorized, Unsupported
from registry.projects.directory import Entry
from registry.projects.errors import (
    LastOwner,
    LastOwnerError,
    MemberUnknown,
    ProjectConflict,
    ProjectExists,
    ProjectInvalid,
    ProjectNotEmpty,
    ProjectNotEmptyError,
    ProjectUnknown,
)
from registry.projects.manage import Problems, Projects
from registry.projects.records import Project
from registry.projects.roles import OWNER

log = logging.getLogger("wharf.projects")
PREFIX = "/api/projects"
MAX_BODY = 64 * 1024


class Asker:
    """Who calls ``/api/projects``: an administrator (or an open registry), a user
    with its groups, or anonymous."""

    def __init__(self, scope: Scope) -> None:
        caller = caller_of(scope)
        self.admin = is_open(scope) or (caller is not None and caller.admin)
        self.name = caller.name if caller is not None else None
        self.identity: Identity | None = caller.identity if caller is not None else None
        if self.identity is None and self.name is not None:
            self.identity = Identity(self.name)

    def role(self, project: Project) -> str | None:
        """The caller's role in ``project`` (its user and group memberships)."""
        found = Entry.of(project).role(self.identity)
        return found[0] if found is not None else None

    def may_read(self, project: Project) -> bool:
        return self.admin or project.public or self.role(project) is not None

    def may_manage(self, project: Project) -> bool:
        return self.admin or self.role(project) == OWNER


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_capped(
        request.stream(), MAX_BODY, lambda: ProjectInvalid("request body too large")
    )
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ProjectInvalid("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ProjectInvalid("the body must be a JSON object")
    return data


def _invalid(e: Problems) -> ProjectInvalid:
    return ProjectInvalid(str(e), detail=e.problems)


class ProjectsAPI:
    """The ASGI app mounted at :data:`PREFIX`."""

    def __init__(self, projects: Projects, selfservice: bool) -> None:
        self.projects = projects
        self.selfservice = selfservice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "projects"
        request = Request(scope, receive)
        asker = Asker(scope)
        path: str = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        if not path.startswith(PREFIX):
            path = scope["path"]
        parts = [unquote(p) for p in path[len(PREFIX) :].split("/") if p]
        method: str = scope["method"]
        if not parts:
            response = await self._root(request, asker, method)
        elif len(parts) == 1:
            response = await self._project(request, asker, method, parts[0])
        elif parts[1] == "members" and len(parts) == 2:
            response = await self._members(request, asker, method, parts[0])
        elif parts[1] == "members" and len(parts) == 4:
            response = await self._member(request, asker, method, parts[0], parts[2], parts[3])
        else:
            raise ProjectUnknown("no such project resource", detail={"path": path[:300]})
        await response(scope, receive, send)

    async def _root(self, request: Request, asker: Asker, method: str) -> Response:
        if method == "GET":
            return await self._list(request, asker)
        if method == "POST":
            return await self._create(request, asker)
        raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})

    async def _list(self, request: Request, asker: Asker) -> Response:
        n, last = pagination(request)
        groups = asker.identity.groups if asker.identity is not None else frozenset()
        found = await self.projects.page(
            fetch_limit(n), last, asker.name, groups, everything=asker.admin
        )
        names, link = page(PREFIX, n, [p.name for p in found])
        body = [p.as_json() for p in found[: len(names)]]
        return json_response({"projects": body}, headers=link)

    async def _create(self, request: Request, asker: Asker) -> Response:
        if not asker.admin:
            if asker.name is None:
                raise Unauthorized("credentials required to create a project")
            if not self.selfservice:
                raise Denied(
                    f"{asker.name} may not create projects: only administrators may "
                    "(projects.selfservice is off)"
                )
        data = await _json_object(request)
        try:
            made = await self.projects.create(data, asker.name, asker.name)
        except Problems as e:
            raise _invalid(e) from None
        except ProjectExists:
            raise ProjectConflict(detail={"name": str(data.get("name"))[:100]}) from None
        log.info("project %s created by %s", made.name, asker.name)
        return json_response(made.as_json(members=True), 201)

    async def _visible(self, asker: Asker, name: str) -> Project:
        """The project, if the caller may see it (else as if there were none)."""
        found = await self.projects.get(name)
        if found is None or not asker.may_read(found):
            if found is not None and asker.name is None:
                raise Unauthorized("credentials required to see this project")
            raise ProjectUnknown(detail={"name": name[:100]})
        return found

    async def _managed(self, asker: Asker, name: str) -> Project:
        found = await self._visible(asker, name)
        if not asker.may_manage(found):
            if asker.name is None:  # a public project: anonymous callers are asked to log in
                raise Unauthorized("credentials required to manage this project")
            raise Denied(f"{asker.name} is not an owner of project {name}")
        return found

    async def _project(self, request: Request, asker: Asker, method: str, name: str) -> Response:
        if method == "GET":
            found = await self._visible(asker, name)
            return json_response(found.as_json(members=True))
        if method == "PATCH":
            await self._managed(asker, name)
            data = await _json_object(request)
            try:
                changed = await self.projects.update(name, data)
            except Problems as e:
                raise _invalid(e) from None
            if changed is None:
                raise ProjectUnknown(detail={"name": name[:100]})
            log.info("project %s changed by %s: %s", name, asker.name, sorted(data))
            return json_response(changed.as_json(members=True))
        if method == "DELETE":
            await self._managed(asker, name)
            force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
            try:
                if not await self.projects.delete(name, force):
                    raise ProjectUnknown(detail={"name": name[:100]})
            except Problems as e:
                raise _invalid(e) from None
            except ProjectNotEmpty as e:
                raise ProjectNotEmptyError(
                    f"project {name} holds {e.repositories} repositories: delete their "
                    "manifests first, or delete with ?force=true",
                    detail={"name": name[:100], "repositories": e.repositories},
                ) from None
            log.info("project %s deleted by %s", name, asker.name)
            return empty(204)
        raise Unsupported("use GET, PATCH or DELETE", headers={"Allow": "GET, PATCH, DELETE"})

    async def _members(self, request: Request, asker: Asker, method: str, name: str) -> Response:
        if method == "GET":
            found = await self._visible(asker, name)
            return json_response({"members": [m.as_json() for m in found.members]})
        if method == "POST":
            await self._managed(asker, name)
            data = await _json_object(request)
            unknown = {k: "unknown field" for k in data if k not in ("kind", "name", "role")}
            missing = {k: "required" for k in ("kind", "name", "role") if k not in data}
            if unknown or missing:
                raise _invalid(Problems({**unknown, **missing}))
            return await self._put(asker, name, data["kind"], data["name"], data["role"])
        raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})

    async def _member(
        self, request: Request, asker: Asker, method: str, name: str, kind: str, member: str
    ) -> Response:
        if method == "GET":
            found = await self._visible(asker, name)
            for m in found.members:
                if (m.kind, m.name) == (kind, member):
                    return json_response(m.as_json())
            raise MemberUnknown(detail={"kind": kind[:10], "name": member[:100]})
        if method == "PUT":
            await self._managed(asker, name)
            data = await _json_object(request)
            problems = {k: "unknown field" for k in data if k != "role"}
            if "role" not in data:
                problems["role"] = "required"
            if problems:
                raise _invalid(Problems(problems))
            return await self._put(asker, name, kind, member, data["role"])
        if method == "DELETE":
            await self._managed(asker, name)
            try:
                done = await self.projects.remove_member(name, kind, member)
            except Problems as e:
                raise _invalid(e) from None
            except LastOwner:
                raise LastOwnerError(
                    f"{kind} {member} is the last owner of project {name}: add another owner first",
                    detail={"kind": kind, "name": member[:100]},
                ) from None
            if done is None:
                raise ProjectUnknown(detail={"name": name[:100]})
            if not done:
                raise MemberUnknown(detail={"kind": kind[:10], "name": member[:100]})
            log.info("%s %s removed from project %s by %s", kind, member, name, asker.name)
            return empty(204)
        raise Unsupported("use GET, PUT or DELETE", headers={"Allow": "GET, PUT, DELETE"})

    async def _put(
        self, asker: Asker, project: str, kind: object, member: object, role: object
    ) -> Response:
        try:
            found = await self.projects.put_member(project, kind, member, role, asker.name)
        except Problems as e:
            raise _invalid(e) from None
        except LastOwner:
            raise LastOwnerError(
                f"{kind} {member} is the last owner of project {project}: add another owner first",
                detail={"kind": str(kind), "name": str(member)[:100]},
            ) from None
        if found is None:
            raise ProjectUnknown(detail={"name": project[:100]})
        made, added = found
        log.info(
            "%s %s is %s of project %s (set by %s)",
            made.kind,
            made.name,
            made.role,
            project,
            asker.name,
        )
        return json_response(made.as_json(), 201 if added else 200)
