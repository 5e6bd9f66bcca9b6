"""The built-in Docker token service, at the path of ``auth.token.realm``.

``GET ?service=&scope=...&offline_token=`` with Basic credentials (or none: an anonymous
token), and the OAuth2 ``POST`` form docker sends (``grant_type=password`` or
``refresh_token``). The token grants the intersection of the scopes asked for and what
the policy allows; a partial (even empty) grant is not an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from auth import scopes as sc
from auth.htpasswd import Htpasswd
from auth.keys import KeyFileError, SigningKey
from auth.policy import Identity, Policy
from auth.scopes import ResourceScope
from auth.throttle import LoginThrottle, TooManyAttempts
from auth.tokens import InvalidToken, TokenIssuer
from registry.accounts.setup import AuthSetup
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.config import AuthSettings, ConfigError
from registry.errors import RegistryError, TooManyRequests, Unauthorized, Unsupported
from registry.middleware.auth import ANONYMOUS, decode_basic, parse_authorization

log = logging.getLogger("wharf.auth")
MAX_FORM = 64 * 1024


class BadTokenRequest(RegistryError):
    """A token request naming another service or an unknown grant type."""

    code, status, default_message = "UNSUPPORTED", 400, "invalid token request"


def grant(policy: Policy, who: Identity | None, asked: list[ResourceScope]) -> list[ResourceScope]:
    """The part of ``asked`` that the policy allows ``who``."""
    granted: list[ResourceScope] = []
    for s in asked:
        if s.type == "repository":
            allowed = policy.allowed(who, s.name)
            wanted = sc.REPOSITORY_ACTIONS if sc.ALL in s.actions else s.actions
            actions = frozenset(wanted & allowed)
        elif (s.type, s.name) == sc.CATALOG and policy.may_list_catalog(who):
            actions = s.actions & {sc.ALL}
        else:
            actions = frozenset()
        if actions:
            granted.append(ResourceScope(s.type, s.name, actions))
    return granted


# (subject or None for anonymous, scopes asked, scopes granted): must not block or raise
GrantRecord = Callable[[str | None, list[str], list[str]], None]


class TokenEndpoint:
    """ASGI handler of the token realm path."""

    def __init__(
        self,
        issuer: TokenIssuer,
        service: str,
        policy: Policy,
        htpasswd: Htpasswd | None,
        path: str,
        throttle: LoginThrottle,
        setup: AuthSetup | None = None,
        on_grant: GrantRecord | None = None,
    ) -> None:
        self.throttle = throttle
        self.on_grant = on_grant  # told of every token issued (the audit log)
        self.setup = setup  # its login() checks htpasswd, LDAP and robot accounts
        self.issuer = issuer
        self.service = service
        self.policy = policy
        self.htpasswd = htpasswd
        self.path = path
        self.challenge = {"WWW-Authenticate": f'Basic realm="{service}"'}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "token"
        request = Request(scope, receive)
        if scope["method"] == "GET":
            body = await self._get(request)
        elif scope["method"] == "POST":
            body = await self._post(request)
        else:
            raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        response = json_response(body, headers={"Cache-Control": "no-store"})
        await response(scope, receive, send)

    async def _login(self, user: str, password: str, scope: Scope) -> Identity:
        address = str((scope.get("client") or ("", 0))[0])
        assert self.setup is not None
        try:
            found = await self.setup.login(user, password, address)
        except TooManyAttempts as e:  # refused before the password was checked
            raise TooManyRequests(str(e), headers=e.headers) from None
        if found is None:
            raise Unauthorized("invalid username or password", headers=self.challenge)
        scope["wharf.user"] = found.identity.name
        # refresh tokens are tied to an htpasswd hash: only for htpasswd users
        scope["wharf.login_source"] = found.source
        return found.identity

    def _check_service(self, service: str | None) -> None:
        if service and service != self.service:
            raise BadTokenRequest(f"this token service is for service {self.service!r}")

    async def _get(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        self._check_service(params.get("service"))
        who: Identity | None = None
        kind, credentials = parse_authorization(
            request.headers.get("authorization", ""), self.challenge
        )
        if kind == "basic":
            creds = decode_basic(credentials)
            if creds is None:
                raise Unauthorized("malformed Basic credentials", headers=self.challenge)
            if creds != ANONYMOUS:
                who = await self._login(*creds, request.scope)
        asked = sc.parse_scopes(params.getlist("scope"))
        offline = params.get("offline_token", "").lower() == "true"
        offline = offline and request.scope.get("wharf.login_source") == "htpasswd"
        return await self._answer_off_loop(who, asked, offline and who is not None)

    async def _post(self, request: Request) -> dict[str, Any]:
        body = await read_capped(
            request.stream(), MAX_FORM, lambda: BadTokenRequest("token request too large")
        )
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        self._check_service(fields.get("service"))
        asked = sc.parse_scopes([fields.get("scope", "")])
        grant_type = fields.get("grant_type")
        if grant_type == "password":
            who = await self._login(
                fields.get("username", ""), fields.get("password", ""), request.scope
            )
            offline = fields.get("access_type") == "offline"
            offline = offline and request.scope.get("wharf.login_source") == "htpasswd"
            return await self._answer_off_loop(who, asked, offline)
        if grant_type == "refresh_token":
            who = await asyncio.to_thread(self._refreshed, fields.get("refresh_token", ""))
            request.scope["wharf.user"] = who.name
            return await self._answer_off_loop(who, asked, False)
        raise BadTokenRequest(f"unsupported grant_type {grant_type!r}")

    async def _answer_off_loop(
        self, who: Identity | None, asked: list[ResourceScope], refresh: bool
    ) -> dict[str, Any]:
        """:meth:`_answer` in a worker thread: signing (RSA) and the htpasswd check of
        a refresh token are blocking."""
        await self.policy.settle(s.name for s in asked if s.type == "repository")
        return await asyncio.to_thread(self._answer, who, asked, refresh)

    def _refreshed(self, token: str) -> Identity:
        try:
            user, fingerprint = self.issuer.check_refresh_token(token)
        except InvalidToken as e:
            raise Unauthorized(str(e), headers=self.challenge) from None
        current = self.htpasswd.fingerprint(user) if self.htpasswd else None
        if current is None or current != fingerprint:
            raise Unauthorized("refresh token revoked", headers=self.challenge)
        return self.policy.identity(user)

    def _answer(
        self, who: Identity | None, asked: list[ResourceScope], refresh: bool
    ) -> dict[str, Any]:
        granted = grant(self.policy, who, asked)
        subject = who.name if who else ""
        token, expires_in, issued = self.issuer.access_token(subject, self.service, granted)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": dt.datetime.fromtimestamp(issued, dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        if granted:
            body["scope"] = " ".join(str(s) for s in granted)
        if self.on_grant is not None:
            self.on_grant(subject or None, [str(s) for s in asked], [str(s) for s in granted])
        if refresh and who is not None and self.htpasswd is not None:
            fingerprint = self.htpasswd.fingerprint(who.name)
            if fingerprint is not None:
                body["refresh_token"] = self.issuer.refresh_token(who.name, fingerprint)
        return body


def build_token_endpoint(
    settings: AuthSettings, setup: AuthSetup, on_grant: GrantRecord | None = None
) -> TokenEndpoint | None:
    """The built-in token service of ``auth.tokenserver``, if enabled; ``on_grant``:
    told of every token issued (the audit log)."""
    server, token = settings.tokenserver, settings.token
    if server is None or not server.enabled or token is None:
        return None
    try:
        signing = SigningKey.load(server.key, server.certificate)
    except KeyFileError as e:
        raise ConfigError(f"auth.tokenserver: {e}") from None
    issuer = TokenIssuer(
        signing,
        token.issuer,
        server.expiration,
        server.refreshexpiration,
    )
    return TokenEndpoint(
        issuer,
        token.service,
        setup.policy,
        setup.htpasswd,
        realm_path(token.realm),
        setup.throttle,
        setup,
        on_grant,
    )


def realm_path(realm: str) -> str:
    """The path part of a realm URL (``https://host/token`` -> ``/token``)."""
    return urlsplit(realm).path or "/"
