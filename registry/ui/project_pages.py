"""The projects' pages: the list with usage against quota, a project's settings, members,
quota and robot accounts (issue #17).

Every read and every change goes through ``/api/projects`` as the viewer
(:class:`~registry.ui.internal.InternalApi`): a page shows what the API lets the viewer
see and a form does what the API lets the viewer do, refused with the API's own error
otherwise. Forms are shown only where the viewer's role allows them (the roles' matrix,
docs/projects.md); the API still decides.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.errors import RegistryError
from registry.sizes import parse_size
from registry.ui.api_pages import (
    Action,
    ApiPages,
    Page,
    Rendered,
    Who,
    invalid,
    refused,
    url,
)
from registry.ui.i18n import N_
from registry.ui.internal import api_path

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


def role_of(who: Who, members: list[dict[str, Any]]) -> str | None:
    """The viewer's highest role among ``members`` (as a user or through a group)."""
    held = [
        m["role"]
        for m in members
        if (m["kind"] == "user" and m["name"] == who.name)
        or (m["kind"] == "group" and m["name"] in who.groups)
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


class ProjectPages(ApiPages):
    """The handlers of ``/ui/projects`` and ``/ui/project`` and their forms."""

    def pages(self) -> dict[str, Page]:
        return {"/ui/projects": self.list_page, "/ui/project": self.project_page}

    def actions(self) -> dict[str, Action]:
        return {
            "/ui/projects/create": self.create,
            "/ui/project/settings": self.settings,
            "/ui/project/quota": self.quota,
            "/ui/project/member": self.member,
            "/ui/project/member/remove": self.remove_member,
            "/ui/project/robot": self.robot,
            "/ui/project/robot/revoke": self.revoke_robot,
        }

    # -- pages -------------------------------------------------------------

    async def list_page(self, request: Request, who: Who) -> Rendered:
        query = {"n": str(PAGE_SIZE)}
        if last := request.query_params.get("last"):
            query["last"] = last
        found = (await self.get(who, "projects", **query))["projects"]
        rows = []
        for project in found:
            usage = await self.optional(who, "projects", project["name"], "usage")
            rows.append({**project, "usage": _bar(usage)})
        next_url = None
        if len(found) == PAGE_SIZE:
            next_url = url("/ui/projects", last=found[-1]["name"])
        context = {"projects": rows, "next_url": next_url, "may_create": who.name is not None}
        return "projects.html", context, 200

    async def project_page(self, request: Request, who: Who) -> Rendered:
        name = request.query_params.get("name", "")
        project = await self.get(who, "projects", name)
        role = role_of(who, project["members"])
        manage = who.admin or role == "owner"
        robots = None
        if who.admin or role in ("maintainer", "owner"):
            robots = (await self.optional(who, "projects", name, "robots") or {}).get("robots")
        context = {
            "project": project,
            "role": role,
            "manage": manage,
            "usage": _bar(await self.optional(who, "projects", name, "usage")),
            "robots": robots,
            "roles": ROLES,
            "role_labels": ROLE_LABELS,
            "kinds": MEMBER_KINDS,
            "actions": ROBOT_ACTIONS,
            "done": request.query_params.get("done"),
        }
        return "project.html", context, 200

    # -- forms ---------------------------------------------------------------

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
            return refused(e, "/ui/projects")
        return RedirectResponse(_done(name, "created"), 303)

    async def settings(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        body = {"public": form.get("public") == "on", "description": form.get("description", "")}
        path = api_path("projects", name)
        return await self.change(
            request, who, "PATCH", path, body, _done(name, "settings"), _page(name)
        )

    async def quota(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("project", "")
        text = form.get("quota", "").strip()
        body: dict[str, Any] = {"bytes": None}
        if text:
            try:
                body = {"bytes": parse_size(text)}
            except ValueError:
                return invalid(
                    N_("Write the quota as a size such as 10GiB, 500MB or 0."), _page(name)
                )
        path = api_path("projects", name, "quota")
        return await self.change(request, who, "PUT", path, body, _done(name, "quota"), _page(name))

    async def member(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        name = form.get("project", "")
        kind, member = form.get("kind", ""), form.get("name", "").strip()
        role = form.get("role", "")
        if form.get("existing") == "1":  # a role change of a member already there
            path = api_path("projects", name, "members", kind, member)
            return await self.change(
                request, who, "PUT", path, {"role": role}, _done(name, "member"), _page(name)
            )
        body = {"kind": kind, "name": member, "role": role}
        path = api_path("projects", name, "members")
        return await self.change(
            request, who, "POST", path, body, _done(name, "member"), _page(name)
        )

    async def remove_member(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        path = api_path("projects", name, "members", form.get("kind", ""), form.get("name", ""))
        return await self.change(
            request, who, "DELETE", path, None, _done(name, "removed"), _page(name)
        )

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
            return refused(e, _page(name))
        # the secret, shown this once: the page is not cached (Cache-Control: no-store)
        return "robot_secret.html", {"project": name, "robot": made.json()}, 201

    async def revoke_robot(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        name = form.get("project", "")
        path = api_path("projects", name, "robots", form.get("robot", ""))
        return await self.change(
            request, who, "DELETE", path, None, _done(name, "revoked"), _page(name)
        )


def _page(project: str) -> str:
    return url("/ui/project", name=project)


def _done(project: str, done: str) -> str:
    return url("/ui/project", name=project, done=done)
