"""``/api/users``: local users (``auth.local``).

- ``GET /api/users?n=&last=`` (admin): the users by name, in pages (``Link`` to the next);
- ``POST /api/users`` ``{"name", "password", "email", "admin"}`` (admin; or anyone,
  anonymous included, with ``auth.local.selfregistration``: then never an admin, and
  throttled by address as failed logins are);
- ``GET``/``PATCH``/``DELETE /api/users/NAME`` (admin): read; change ``disabled``,
  ``admin``, ``email``, ``password`` (a reset); delete;
- ``GET /api/users/me``: who the caller is (name, source, admin, groups);
- ``PUT /api/users/me/password`` ``{"old_password", "new_password"}``: a local user's own.

Errors are OCI error bodies; a request with bad fields names every field's problem in
``detail`` (``[{"field", "problem"}]``) and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from auth.policy import Identity
from auth.throttle import LoginThrottle, TooManyAttempts
from registry.accounts.errors import (
    UserConflict,
    UserExists,
    UserFieldsInvalid,
    UserInvalid,
    UserUnknown,
)
from registry.accounts.records import is_robot
from registry.accounts.robots import RobotAccounts
from registry.accounts.users import UserAccounts
from registry.api.access import caller_of, require_admin
from registry.api.bodies import read_capped
from registry.api.http import empty, fetch_limit, json_response, page, pagination
from registry.errors import Denied, TooManyRequests, Unauthorized, Unsupported

log = logging.getLogger("wharf.auth")
PREFIX = "/api/users"
MAX_BODY = 16 * 1024


def _invalid(problems: dict[str, str]) -> UserInvalid:
    detail = [{"field": k, "problem": v} for k, v in problems.items()]
    return UserInvalid("; ".join(f"{k} {v}" for k, v in problems.items()), detail=detail)


class UsersAPI:
    """The ASGI app mounted at :data:`PREFIX`."""

    def __init__(
        self,
        users: UserAccounts,
        throttle: LoginThrottle,
        source_of: Callable[[str], str],
        identity: Callable[[str], Identity],
        robots: RobotAccounts,
        self_registration: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.users = users
        self.throttle = throttle
        self.source_of = source_of
        self.identity = identity
        self.robots = robots
        self.self_registration = self_registration
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "users"
        method: str = scope["method"]
        rest = scope["path"][len(PREFIX) :].strip("/")
        request = Request(scope, receive)
        response: Response
        if not rest:
            if method == "GET":
                require_admin(scope)
                response = await self._list(request)
            elif method == "POST":
                response = await self._create(request)
            else:
                raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        elif rest == "me":
            if method != "GET":
                raise Unsupported("use GET", headers={"Allow": "GET"})
            response = await self._me(scope)
        elif rest == "me/password":
            if method != "PUT":
                raise Unsupported("use PUT", headers={"Allow": "PUT"})
            response = await self._own_password(request)
        else:
            require_admin(scope)
            response = await self._one(request, unquote(rest))
        await response(scope, receive, send)

    async def _body(self, request: Request) -> dict[str, Any]:
        body = await read_capped(
            request.stream(), MAX_BODY, lambda: UserInvalid("request body too large")
        )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise UserInvalid("the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise UserInvalid("the body must be a JSON object")
        return data

    async def _list(self, request: Request) -> Response:
        n, last = pagination(request)
        found = await self.users.page(fetch_limit(n), last)
        by_name = {u.name: u for u in found}
        names, link = page(PREFIX, n, [u.name for u in found])
        return json_response({"users": [by_name[x].as_json() for x in names]}, headers=link)

    async def _create(self, request: Request) -> Response:
        scope = request.scope
        caller = caller_of(scope)
        if not self.self_registration:
            require_admin(scope)
        admin_caller = _is_admin(scope)
        data = await self._body(request)
        unknown = set(data) - {"name", "password", "email", "admin"}
        if unknown:
            raise _invalid({k: "unknown field (name, password, email, admin)" for k in unknown})
        wants_admin = data.get("admin", False)
        if not admin_caller and wants_admin is not False:
            raise Denied("self-registration never makes an administrator")
        name = data.get("name")
        fields = (name, data.get("password"), data.get("email", ""), wants_admin)
        by = caller.name if caller is not None and caller.name else None
        if admin_caller:
            user = await self._create_user(*fields, by)
        else:  # self-registration: throttled by address, as failed logins are
            user = await self._self_register(scope, *fields)
        log.info("local user %s created by %s", user.name, by or "self-registration")
        return json_response(user.as_json(), 201, headers={"Cache-Control": "no-store"})

    async def _create_user(self, *fields: Any) -> Any:
        try:
            return await self.users.create(*fields)
        except UserFieldsInvalid as e:
            raise _invalid(e.problems) from None
        except UserExists:
            raise UserConflict(detail={"name": str(fields[0])[:100]}) from None

    async def _self_register(self, scope: Scope, *fields: Any) -> Any:
        address = _address(scope)
        key = f"register:{str(fields[0])[:255]}"
        try:
            with self.throttle.attempt(key, address):
                wait = self.throttle.delay(key, address)
                self.throttle.failed(key, address)  # counted, so the address slows down
                try:
                    return await self._create_user(*fields, None)
                finally:
                    if wait:
                        await self.sleep(wait)
        except TooManyAttempts as e:
            raise TooManyRequests(str(e), headers=e.headers) from None

    async def _one(self, request: Request, name: str) -> Response:
        method = request.scope["method"]
        me = _name(request.scope)
        if method == "GET":
            user = await self.users.get(name)
            if user is None:
                raise UserUnknown(detail={"name": name[:100]})
            return json_response(user.as_json())
        if method == "PATCH":
            data = await self._body(request)
            if name == me and (data.get("disabled") is True or data.get("admin") is False):
                raise _invalid({"name": "an administrator cannot disable or demote themselves"})
            try:
                user = await self.users.update(name, data)
            except UserFieldsInvalid as e:
                raise _invalid(e.problems) from None
            if user is None:
                raise UserUnknown(detail={"name": name[:100]})
            log.info("local user %s changed by %s (%s)", name[:100], me, ",".join(sorted(data)))
            return json_response(user.as_json())
        if method == "DELETE":
            if name == me:
                raise _invalid({"name": "an administrator cannot delete themselves"})
            if not await self.users.delete(name):
                raise UserUnknown(detail={"name": name[:100]})
            log.info("local user %s deleted by %s", name[:100], me)
            return empty(204)
        raise Unsupported("use GET, PATCH or DELETE", headers={"Allow": "GET, PATCH, DELETE"})

    async def _me(self, scope: Scope) -> Response:
        name = _name(scope)
        if name is None:
            raise Unauthorized("log in to see who you are")
        source = self.source_of(name)
        if source == "local" and await self.users.get(name) is None:
            source = "ldap"  # not in the database: LDAP answered for it
        groups = set(self.identity(name).groups)
        robot = await self.robots.get(name) if source == "robot" else None
        if robot is not None:
            groups |= set(robot.groups)
        body = {"name": name, "source": source, "admin": _is_admin(scope)}
        return json_response({**body, "groups": sorted(groups)})

    async def _own_password(self, request: Request) -> Response:
        scope = request.scope
        name = _name(scope)
        if name is None:
            raise Unauthorized("log in to change your password")
        if is_robot(name) or self.source_of(name) != "local" or not await self.users.get(name):
            raise Denied(f"{name} is not a local user: change the password at its source")
        data = await self._body(request)
        address = _address(scope)
        try:
            with self.throttle.attempt(name, address):
                try:
                    done = await self.users.change_password(
                        name, data.get("old_password"), data.get("new_password")
                    )
                except UserFieldsInvalid as e:
                    raise _invalid(e.problems) from None
                if not done:  # a wrong old password is a failed login
                    wait = self.throttle.delay(name, address)
                    self.throttle.failed(name, address)
                    log.warning("wrong old password for %r from %s", name[:100], address)
                    if wait:
                        await self.sleep(wait)
                    raise _invalid({"old_password": "is not your current password"})
        except TooManyAttempts as e:
            raise TooManyRequests(str(e), headers=e.headers) from None
        log.info("local user %s changed their password", name[:100])
        return empty(204)


def _name(scope: Scope) -> str | None:
    caller = caller_of(scope)
    return caller.name if caller is not None else None


def _is_admin(scope: Scope) -> bool:
    """Whether the caller is an administrator (or the registry is open)."""
    try:
        require_admin(scope)
    except (Unauthorized, Denied):
        return False
    return True


def _address(scope: Scope) -> str:
    return str((scope.get("client") or ("", 0))[0])
