"""Users' pages (issue #17): local users for administrators (create, disable, enable,
delete), my account (who I am, my password, my projects), and sign-up where
``auth.local.selfregistration`` is on. Answered by ``/api/users`` and ``/api/projects``
as the viewer, like every page of :mod:`registry.ui.api_pages`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import RegistryError
from registry.ui.api_pages import Action, ApiPages, Page, Rendered, Who, invalid, refused, url
from registry.ui.i18n import N_
from registry.ui.internal import InternalApi, api_path
from registry.ui.project_pages import ROLE_LABELS, role_of

PAGE_SIZE = 50
PASSWORDS_DIFFER = N_("The two passwords differ.")


class AccountPages(ApiPages):
    """``/ui/users`` (administrators), ``/ui/account`` (anyone signed in), ``/ui/signup``."""

    def __init__(self, api: InternalApi, local_users: bool, selfregistration: bool) -> None:
        super().__init__(api)
        self.local_users = local_users
        self.selfregistration = selfregistration

    def pages(self) -> dict[str, Page]:
        found: dict[str, Page] = {"/ui/account": self.account_page}
        if self.local_users:
            found["/ui/users"] = self.users_page
        if self.selfregistration:
            found["/ui/signup"] = self.signup_page
        return found

    def actions(self) -> dict[str, Action]:
        found: dict[str, Action] = {}
        if self.local_users:
            found |= {
                "/ui/users/create": self.create_user,
                "/ui/users/state": self.user_state,
                "/ui/users/delete": self.delete_user,
                "/ui/account/password": self.own_password,
            }
        if self.selfregistration:
            found["/ui/signup"] = self.signup
        return found

    # -- pages -------------------------------------------------------------

    async def users_page(self, request: Request, who: Who) -> Rendered:
        query = {"n": str(PAGE_SIZE)}
        if last := request.query_params.get("last"):
            query["last"] = last
        users = (await self.get(who, "users", **query))["users"]
        next_url = url("/ui/users", last=users[-1]["name"]) if len(users) == PAGE_SIZE else None
        context = {"users": users, "next_url": next_url, "done": request.query_params.get("done")}
        return "users.html", context, 200

    async def account_page(self, request: Request, who: Who) -> Rendered:
        me = await self.get(who, "users", "me")
        projects = (await self.get(who, "projects", n="1000"))["projects"]
        mine: list[dict[str, Any]] = []
        for project in projects:
            found = await self.optional(who, "projects", project["name"])
            role = role_of(who, found["members"]) if found else None
            if role is not None:
                mine.append({"name": project["name"], "role": role, "public": project["public"]})
        context = {
            "me": me,
            "projects": mine,
            "role_labels": ROLE_LABELS,
            "may_change_password": self.local_users and me.get("source") == "local",
            "done": request.query_params.get("done"),
        }
        return "account.html", context, 200

    async def signup_page(self, request: Request, who: Who) -> Rendered:
        return "signup.html", {}, 200

    # -- forms ---------------------------------------------------------------

    async def create_user(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        if form.get("password", "") != form.get("password2", ""):
            return invalid(PASSWORDS_DIFFER, "/ui/users")
        body = {
            "name": form.get("name", "").strip(),
            "password": form.get("password", ""),
            "email": form.get("email", "").strip(),
            "admin": form.get("admin") == "on",
        }
        done = url("/ui/users", done="created")
        return await self.change(request, who, "POST", api_path("users"), body, done, "/ui/users")

    async def user_state(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        body = {"disabled": form.get("disabled") == "true"}
        path = api_path("users", form.get("name", ""))
        done = url("/ui/users", done="changed")
        return await self.change(request, who, "PATCH", path, body, done, "/ui/users")

    async def delete_user(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        path = api_path("users", form.get("name", ""))
        done = url("/ui/users", done="deleted")
        return await self.change(request, who, "DELETE", path, None, done, "/ui/users")

    async def own_password(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        if form.get("new_password", "") != form.get("new_password2", ""):
            return invalid(PASSWORDS_DIFFER, "/ui/account")
        body = {
            "old_password": form.get("old_password", ""),
            "new_password": form.get("new_password", ""),
        }
        path = api_path("users", "me", "password")
        done = url("/ui/account", done="password")
        return await self.change(request, who, "PUT", path, body, done, "/ui/account")

    async def signup(self, request: Request, who: Who, form: dict[str, str]) -> Response | Rendered:
        if form.get("password", "") != form.get("password2", ""):
            return invalid(PASSWORDS_DIFFER, "/ui/signup")
        body = {
            "name": form.get("name", "").strip(),
            "password": form.get("password", ""),
            "email": form.get("email", "").strip(),
        }
        client = (request.client.host, 0) if request.client else None
        try:
            await self.api.call(who.caller, "POST", api_path("users"), body=body, client=client)
        except RegistryError as e:
            return refused(e, "/ui/signup")
        return (
            "message.html",
            {
                "title_id": N_("Account created"),
                "message_id": N_(
                    "Your account is ready: sign in with your user name and password."
                ),
            },
            201,
        )
