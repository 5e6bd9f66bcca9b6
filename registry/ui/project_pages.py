"""The projects' pages: the list with usage against quota, a project's settings, members,
quota and robot accounts (issue #17).

Every read and every change goes through ``/api/projects`` as the viewer
(:class:`~registry.ui.internal.InternalApi`): a page shows what the API lets the viewer
see and a form does what the API lets the viewer do, refused with the API's own error
otherwise. Forms are shown only where the viewer's role allows them (the roles' matrix,
docs/projects.md); the API still decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.errors import RegistryError
from registry.middleware.auth import Caller
from registry.sizes import parse_size
from registry.ui.i18n import N_
from registry.ui.internal import InternalApi, api_path
from registry.ui.session import Session

ROLES = ("guest", "developer", "maintainer", "owner")
ROLE_LABELS = {
    "guest": N_("guest"),
    "developer": N_("developer"),
    "maintainer": N_("maintainer"),
    "owner": N_("owner"),
}
MEMBER_KINDS = {"user": N_("user"), "group": N_("group")}
ROBOT_ACTIONS = ("pull", "push", "delete")
PAGE_SIZE = 50

# (template, context, status) of a page; the page's renderer adds the viewer and the rest
Rendered = tuple[str, dict[str, Any], int]
Render = Callable[[Request, Session, str, dict[str, Any], int], Response]


class ProjectPageError(Exception):
    """A project page the viewer may not see: the API's refusal, shown as a message."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Who:
    """The viewer as the API sees them, and the role they hold in a project."""

    caller: Caller
    name: str | None
    admin: bool
    groups: frozenset[str]

    def role(self, members: list[dict[str, Any]]) -> str | None:
        """The viewer's highest role among ``members`` (as a user or through a group)."""
        held = [
            m["role"]
            for m in members
            if (m["kind"] == "user" and m["name"] == self.name)
            or (m["kind"] == "group" and m["name"] in self.groups)
        ]
        return max(held, key=ROLES.index) if held else None


def _bar(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A usage bar's numbers: bytes used, the quota, and the share of it (at most 100)."""
    if usage is None:
        return None
    quota = usage.get("quota")
    percent = usage.get("percent")
    return {
        "bytes": usage.get("bytes", 0),
        "shared": usage.get("shared_bytes", 0),
        "quota": quota,
        "percent": percent,
        "width": min(100.0, float(percent)) if quota and percent is not None else None,
        "level": "full" if (percent or 0) >= 100 else "near" if (percent or 0) >= 80 else "ok",
    }


class ProjectPages:
    """The handlers of ``/ui/projects`` and ``/ui/project`` and their forms."""

    def __init__(self, api: InternalApi) -> None:
        self.api = api

    def pages(self) -> dict[str, Callable[[Request, Who], Awaitable[Rendered]]]:
        return {"/ui/projects": self.list_page, "/ui/project": self.project_page}

    def actions(
        self,
    ) -> dict[str, Callable[[Request, Who, dict[str, str]], Awaitable[Response | Rendered]]]:
        return {
            "/ui/projects/create": self.create,
            "/ui/project/settings": self.settings,
            "/ui/project/quota": self.quota,
            "/ui/project/member": self.member,
            "/ui/project/member/remove": self.remove_member,
            "/ui/project/robot": self.robot,
            "/ui/project/robot/revoke": self.revoke_robot,
        }

    async def _get(self, who: Who, *parts: str, **query: str) -> Any:
        try:
            return (await self.api.call(who.caller, "GET", api_path(*parts), query)).json()
        except RegistryError as e:
            raise ProjectPageError(e) from None

    async def _optional(self, who: Who, *parts: str) -> Any:
        """What the API answers, or None where it refuses (a part the viewer may not see)."""
        try:
            return (await self.api.call(who.caller, "GET", api_path(*parts))).json()
        except RegistryError:
            return None

    # -- pages -------------------------------------------------------------

    async def list_page(self, request: Request, who: Who) -> Rendered:
        query = {"n": str(PAGE_SIZE)}
        if last := request.query_params.get("last"):
            query["last"] = last
        found = (await self._get(who, "projects", **query))["projects"]
        rows = []
        for project in found:
            usage = await self._optional(who, "projects", project["name"], "usage")
            rows.append({**project, "usage": _bar(usage)})
        next_url = None
        if len(found) == PAGE_SIZE:
            next_url = "/ui/projects?" + urlencode({"last": found[-1]["name"]})
        context = {"projects": rows, "next_url": next_url, "may_create": who.name is not None}
        return "projects.html", context, 200

    async def project_page(self, request: Request, who: Who) -> Rendered:
        name = request.query_params.get("name", "")
        project = await self._get(who, "projects", name)
        role = who.role(project["members"])
        manage = who.admin or role == "owner"
        robots = None
        if who.admin or role in ("maintainer", "owner"):
            robots = (await self._optional(who, "projects", name, "robots") or {}).get("robots")
        context = {
            "project": project,
            "role": role,
            "manage": manage,
            "usage": _bar(await self._optional(who, "projects", name, "usage")),
            "robots": robots,
            "roles": ROLES,
            "role_labels": ROLE_LABELS,
            "kinds": MEMBER_KINDS,
            "actions": ROBOT_ACTIONS,
            "done": request.query_params.get("done"),
        }
        return "project.html", context, 200

    # -- forms ---------------------------------------------------------------

    async def _change(
        self,
        who: Who,
        method: str,
        path: str,
        body: object,
        project: str,
        done: str,
        request: Request,
    ) -> Response | Rendered:
        """Make a change through the API; back to the project's page, or the refusal."""
        try:
            client = (request.client.host, 0) if request.client else None
            await self.api.call(who.caller, method, path, body=body, client=client)
        except RegistryError as e:
            return _refused(e, project)
        return _back(project, done)

    async def create(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("name", "").strip()
        body = {
            "name": name,
            "public": form.get("public") == "on",
            "description": form.get("description", ""),
        }
        try:
            await self.api.call(who.caller, "POST", api_path("projects"), body=body)
        except RegistryError as e:
            return _refused(e, None)
        return _back(name, "created")

    async def settings(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        body = {"public": form.get("public") == "on", "description": form.get("description", "")}
        path = api_path("projects", name)
        return await self._change(who, "PATCH", path, body, name, "settings", request)

    async def quota(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("project", "")
        text = form.get("quota", "").strip()
        body: dict[str, Any] = {"bytes": None}
        if text:
            try:
                body = {"bytes": parse_size(text)}
            except ValueError:
                return _invalid(N_("Write the quota as a size such as 10GiB, 500MB or 0."), name)
        path = api_path("projects", name, "quota")
        return await self._change(who, "PUT", path, body, name, "quota", request)

    async def member(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("project", "")
        kind, member = form.get("kind", ""), form.get("name", "").strip()
        role = form.get("role", "")
        if form.get("existing") == "1":  # a role change of a member already there
            path = api_path("projects", name, "members", kind, member)
            return await self._change(who, "PUT", path, {"role": role}, name, "member", request)
        body = {"kind": kind, "name": member, "role": role}
        path = api_path("projects", name, "members")
        return await self._change(who, "POST", path, body, name, "member", request)

    async def remove_member(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        path = api_path("projects", name, "members", form.get("kind", ""), form.get("name", ""))
        return await self._change(who, "DELETE", path, None, name, "removed", request)

    async def robot(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("project", "")
        patterns = [p.strip() for p in form.get("repositories", "").split(",") if p.strip()]
        actions = [a for a in ROBOT_ACTIONS if form.get(f"action-{a}") == "on"]
        body: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "description": form.get("description", ""),
            "permissions": [{"repositories": patterns, "actions": actions}],
        }
        if expires := form.get("expires", "").strip():
            body["expires"] = expires
        try:
            made = await self.api.call(
                who.caller, "POST", api_path("projects", name, "robots"), body=body
            )
        except RegistryError as e:
            return _refused(e, name)
        # the secret, shown this once: the page is not cached (Cache-Control: no-store)
        return "robot_secret.html", {"project": name, "robot": made.json()}, 201

    async def revoke_robot(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        path = api_path("projects", name, "robots", form.get("robot", ""))
        return await self._change(who, "DELETE", path, None, name, "revoked", request)


def _back(project: str, done: str) -> Response:
    return RedirectResponse("/ui/project?" + urlencode({"name": project, "done": done}), 303)


def _refused(error: RegistryError, project: str | None) -> Rendered:
    """The API's refusal of a form, with every field's problem it named."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    problems = [(str(k), str(v)) for k, v in detail.items() if isinstance(v, str)]
    context = {"error": error.message, "code": error.code, "problems": problems}
    return "refused.html", {**context, "project": project}, error.http_status


def _invalid(message: str, project: str) -> Rendered:
    return "refused.html", {"message_id": message, "project": project, "problems": []}, 400
