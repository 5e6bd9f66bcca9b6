"""Who may do what: Basic (htpasswd) or Bearer (Docker token) auth on every ``/v2/`` request.

The middleware finds the route (label, repository) itself, maps it to the scopes the
reference registry requires (``GET``/``HEAD``: pull; ``DELETE``: delete; other writes:
pull and push; a cross-repository mount also pull on ``from``, else it becomes a plain
upload), and refuses with the spec's ``UNAUTHORIZED`` (401, with a ``WWW-Authenticate``
challenge) or ``DENIED`` (403: logged in, but the policy says no). ``/v2/`` itself only
needs a caller who logged in, so clients are asked for credentials there. The catalog
is open to every caller but lists only repositories the caller may pull, unless the
caller has ``registry:catalog:*``: a filter is left in ``scope["wharf.catalog_filter"]``.

With no ``auth`` configured, no middleware is installed at all. What the gates are made
of (the policy, htpasswd, LDAP, robot accounts) is composed by :mod:`registry.accounts.setup`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from auth import scopes as sc
from auth.logins import Logins
from auth.policy import Identity, Policy
from auth.scopes import ResourceScope
from auth.throttle import TooManyAttempts
from auth.tokens import InvalidToken, TokenVerifier
from registry.errors import Denied, NameUnknown, RegistryError, TooManyRequests, Unauthorized
from registry.request_context import current_request

log = logging.getLogger("wharf.auth")

Resolver = Callable[[str], "tuple[str, dict[str, str]] | None"]
CatalogFilter = Callable[[str], bool]


def required_scopes(label: str, method: str, repository: str | None) -> list[ResourceScope]:
    """What a request needs: nothing for ``/v2/`` and the catalog (they are handled
    apart), else pull for reads, delete for deletes, pull and push for other writes."""
    if repository is None or label in ("base", "catalog"):
        return []
    if method in ("GET", "HEAD"):
        return [sc.repository(repository, sc.PULL)]
    if method == "DELETE":
        return [sc.repository(repository, sc.DELETE)]
    return [sc.repository(repository, sc.PULL, sc.PUSH)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and what it may do."""

    name: str | None
    may: Callable[[str, str], bool]  # (repository, action)
    full_catalog: bool
    sees: CatalogFilter  # which repositories the catalog shows (without full_catalog)
    admin: bool = False  # may use the administration API (auth.policy.admins)
    identity: Identity | None = None  # who, with its groups (None: anonymous or open)


class Gate(Protocol):
    # the challenge for Wharf's own API and /metrics (Basic credentials are taken there)
    api_challenge: dict[str, str]

    async def admit(self, scope: Scope, label: str, needed: list[ResourceScope]) -> Caller:
        """The caller, or raise :class:`Unauthorized` / :class:`Denied`."""
        ...


def parse_authorization(value: str, challenge: dict[str, str]) -> tuple[str, str]:
    """(scheme in lower case, credentials) of an ``Authorization`` header (decoded as
    latin-1); :class:`Unauthorized` with ``challenge`` if it holds bytes beyond ASCII,
    which no scheme allows."""
    if not value.isascii():
        raise Unauthorized("malformed Authorization header", headers=challenge)
    kind, _, credentials = value.strip().partition(" ")
    return kind.lower(), credentials.strip()


def _authorization(scope: Scope, challenge: dict[str, str]) -> tuple[str, str] | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            return parse_authorization(value.decode("latin-1"), challenge)
    return None


def _scope_text(needed: list[ResourceScope]) -> str:
    return " ".join(str(s) for s in needed)


ANONYMOUS = ("", "")  # empty Basic credentials (``Basic Og==``, skopeo --no-creds)


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """(user, password) of a Basic credential; :data:`ANONYMOUS` for empty ones (``:``);
    None if malformed (not ASCII base64, not UTF-8, no colon, a password without a user)."""
    if not credentials.isascii():
        return None
    try:
        text = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    user, sep, password = text.partition(":")
    if not sep or (not user and password):
        return None
    return user, password


def _client(scope: Scope) -> str:
    client = scope.get("client") or ("", 0)
    return str(client[0])


async def identify_basic(
    logins: Logins, scope: Scope, challenge: dict[str, str]
) -> Identity | None:
    """The caller named by Basic credentials (any source: htpasswd, LDAP, robot); None
    without credentials; :class:`Unauthorized` with ``challenge`` for bad ones."""
    auth = _authorization(scope, challenge)
    if auth is None or auth[0] != "basic":
        return None
    creds = decode_basic(auth[1])
    if creds is None:
        raise Unauthorized("malformed Basic credentials", headers=challenge)
    if creds == ANONYMOUS:
        return None
    try:
        found = await logins.login(*creds, _client(scope))
    except TooManyAttempts as e:  # refused before the password was checked
        raise TooManyRequests(str(e), headers=e.headers) from None
    if found is None:
        raise Unauthorized("invalid username or password", headers=challenge)
    return found.identity


def caller_for(policy: Policy, who: Identity | None) -> Caller:
    """What ``who`` (None: anonymous) may do under ``policy``."""

    def may(repository: str, action: str) -> bool:
        return action in policy.allowed(who, repository)

    def sees(repository: str) -> bool:
        return may(repository, sc.PULL)

    name = who.name if who else None
    full = policy.may_list_catalog(who)
    return Caller(name, may, full, sees, policy.is_admin(who), who)


def missing_project_refusal(policy: Policy | None, s: ResourceScope) -> RegistryError | None:
    """The refusal of a request into a repository whose project does not exist, saying
    which: ``DENIED`` for a push, ``NAME_UNKNOWN`` (404: nothing is there) for a read, so
    that a client checking for blobs before a push goes on to the push's clear refusal.
    None for any other refusal."""
    missing = policy.missing_project(s.name) if policy is not None else None
    if missing is None:
        return None
    if sc.PUSH not in s.actions and sc.DELETE not in s.actions:
        return NameUnknown(f"project {missing} does not exist", detail={"name": s.name})
    return Denied(
        f"project {missing} does not exist: ask an administrator to create it "
        f"(a push creates a missing project only where self-service or a rule allows it)",
        detail=[s.claim()],
    )


class BasicGate:
    """Basic credentials (``auth.htpasswd``, ``auth.ldap``, robot accounts) checked by
    :class:`Logins`, then the policy."""

    def __init__(self, logins: Logins, policy: Policy, realm: str) -> None:
        self.logins = logins
        self.policy = policy
        self.challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
        self.api_challenge = self.challenge

    async def identify(self, scope: Scope) -> Identity | None:
        return await identify_basic(self.logins, scope, self.challenge)

    async def admit(self, scope: Scope, label: str, needed: list[ResourceScope]) -> Caller:
        who = await self.identify(scope)
        if who is None and label == "base":
            raise Unauthorized(headers=self.challenge)
        await self.policy.settle(s.name for s in needed)
        for s in needed:
            allowed = self.policy.allowed(who, s.name)
            if not s.actions <= allowed:
                detail = [s.claim()]
                if who is None:
                    raise Unauthorized(detail=detail, headers=self.challenge)
                raise missing_project_refusal(self.policy, s) or Denied(detail=detail)
        return caller_for(self.policy, who)


class TokenGate:
    """``auth.token``: a bearer token from the token service, checked for its scopes."""

    def __init__(
        self,
        verifier: TokenVerifier,
        realm: str,
        service: str,
        policy: Policy | None,
        logins: Logins | None = None,
        basic_realm: str = "wharf",
    ) -> None:
        self.verifier = verifier
        self.realm = realm
        self.service = service
        self.policy = policy  # the built-in token service's: lets the catalog filter by it
        # Wharf's own API and pages (/api/, /ui/) also take Basic credentials
        self.logins = logins
        self.basic_challenge = {"WWW-Authenticate": f'Basic realm="{basic_realm}"'}
        self.api_challenge = self.basic_challenge

    def _challenge(self, needed: list[ResourceScope], error: str | None = None) -> dict[str, str]:
        value = f'Bearer realm="{self.realm}",service="{self.service}"'
        if needed:
            value += f',scope="{_scope_text(needed)}"'
        if error:
            value += f',error="{error}"'
        return {"WWW-Authenticate": value}

    async def _admit_api(self, scope: Scope) -> Caller:
        """``/api/``, ``/ui/`` without a bearer token: Basic credentials or nobody."""
        policy = self.logins.policy if self.logins is not None else Policy()
        auth = _authorization(scope, self.basic_challenge)
        if auth is None:
            return caller_for(policy, None)
        if auth[0] == "basic" and self.logins is not None:
            who = await identify_basic(self.logins, scope, self.basic_challenge)
            return caller_for(policy, who)
        raise Unauthorized("use Basic credentials or a bearer token", headers=self.basic_challenge)

    def _identity(self, subject: str) -> Identity | None:
        if not subject or self.policy is None:
            return None
        if self.logins is not None:
            return self.logins.identity(subject)
        return self.policy.identity(subject)

    async def _missing_project(self, subject: str, s: ResourceScope) -> RegistryError | None:
        """A request refused because its project does not exist, to a caller whom the
        built-in token service would not give more there either."""
        if self.policy is None or not subject:
            return None
        await self.policy.settle([s.name])
        refusal = missing_project_refusal(self.policy, s)
        if refusal is None:
            return None
        may = self.policy.allowed(self._identity(subject), s.name)
        return None if s.actions <= may else refusal

    async def admit(self, scope: Scope, label: str, needed: list[ResourceScope]) -> Caller:
        asked = [sc.catalog()] if label == "catalog" else needed
        challenge = self.basic_challenge if label == "api" else self._challenge(asked)
        auth = _authorization(scope, challenge)
        if label == "api" and (auth is None or auth[0] != "bearer"):
            return await self._admit_api(scope)
        if auth is None or auth[0] != "bearer" or not auth[1]:
            raise Unauthorized(headers=self._challenge(asked))
        try:
            token = self.verifier.verify(auth[1])
        except InvalidToken as e:
            log.info("bearer token refused from %s: %s", _client(scope), e)
            raise Unauthorized(
                "invalid token", headers=self._challenge(asked, "invalid_token")
            ) from None
        for s in needed:
            if not token.access.allows_all(s):
                refusal = await self._missing_project(token.subject, s)
                if refusal is not None:  # a new token would not give more
                    raise refusal
                raise Unauthorized(
                    "insufficient scope",
                    detail=[s.claim()],
                    headers=self._challenge(needed, "insufficient_scope"),
                )
        access, policy = token.access, self.policy
        who = self._identity(token.subject)

        def may(repository: str, action: str) -> bool:
            # only what the token says: the token service is the authority here
            return access.allows("repository", repository, action)

        def sees(repository: str) -> bool:
            # the catalog also shows what the built-in service's policy would grant
            if access.allows("repository", repository, sc.PULL):
                return True
            return policy is not None and sc.PULL in policy.allowed(who, repository)

        full = access.allows(*sc.CATALOG, sc.ALL)
        admin = policy is not None and policy.is_admin(who)
        return Caller(token.subject or None, may, full, sees, admin, who)


# What a path is, as the app dispatches it (see ``Wharf.classify``): the middleware
# identifies and authorizes by the same answer the dispatcher routes by, so no spelling
# of a path (trailing slash or not, doubled slashes, percent-encoding) reaches a handler
# without passing here.
Classifier = Callable[[str], str]
DISTRIBUTION = "v2"  # the OCI API: scopes from the route
MOUNTED = "api"  # Wharf's own API and pages: the caller is identified, handlers check it
METRICS = "metrics"  # administrators only when auth is on
PUBLIC = frozenset({"health", "token", "none"})  # health, the token service (its own
# login), and paths nothing serves (answered 404)


class AuthMiddleware:
    """Admits or refuses each ``/v2/`` request; identifies the caller of Wharf's own API
    and pages (``/api/...``, ``/ui...``), leaving it in ``scope["wharf.caller"]`` for the
    handlers to check (see :mod:`registry.api.access`); ``/metrics`` needs an
    administrator. What a path is comes from ``classify``, the dispatcher's own answer.
    """

    def __init__(self, app: ASGIApp, gate: Gate, resolve: Resolver, classify: Classifier) -> None:
        self.app = app
        self.gate = gate
        self.resolve = resolve
        self.classify = classify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = self.classify(scope["path"])
        if kind == DISTRIBUTION:
            await self._distribution(scope, receive, send)
            return
        if kind not in PUBLIC:  # MOUNTED, METRICS and anything added later
            caller = await self.gate.admit(scope, "api", [])
            _identified(scope, caller)
            if kind != MOUNTED and not caller.admin:
                if caller.name is None:
                    challenge = self.gate.api_challenge
                    raise Unauthorized("administrator credentials required", headers=challenge)
                raise Denied(f"{caller.name} is not an administrator")
        await self.app(scope, receive, send)

    async def _distribution(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        found = self.resolve(path)
        if found is None:
            await self.app(scope, receive, send)  # the router answers 404
            return
        label, params = found
        repository = params.get("name")
        scope["wharf.route"] = label
        if repository:
            scope["wharf.repository"] = repository
        method = scope["method"]
        caller = await self.gate.admit(scope, label, required_scopes(label, method, repository))
        _identified(scope, caller)
        if label == "catalog" and not caller.full_catalog:
            scope["wharf.catalog_filter"] = caller.sees
        if label == "uploads" and method == "POST":
            _check_mount(scope, caller)
        await self.app(scope, receive, send)


def _identified(scope: Scope, caller: Caller) -> None:
    scope["wharf.caller"] = caller
    scope["wharf.user"] = caller.name
    info = current_request.get()
    if info is not None:
        info.actor = caller.name


def _check_mount(scope: Scope, caller: Caller) -> None:
    """A mount from a repository the caller may not pull becomes a plain upload."""
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    source = dict(query).get("from")
    if "mount" not in dict(query) or not source or caller.may(source, sc.PULL):
        return
    kept = [(k, v) for k, v in query if k not in ("mount", "from")]
    scope["query_string"] = urlencode(kept).encode("latin-1")
