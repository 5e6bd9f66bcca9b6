"""Authentication to a remote registry: Basic, and the Docker token flow.

A 401 carries ``WWW-Authenticate``: ``Basic realm=...`` (then every later request sends
the credentials), or ``Bearer realm=...,service=...,scope=...`` (then a GET of the realm,
with the credentials as Basic auth if there are any, returns a token for that scope).
Tokens are cached per scope until shortly before they expire.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

import httpx

from replicator.errors import RemoteAuthError

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` value."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Authenticator:
    """Remembers how a remote wants to be authenticated and caches bearer tokens."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.mode = ""  # "", "basic" or "bearer"
        self.bearer: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def header(self, scope: str) -> str | None:
        """The Authorization header for a request needing ``scope``, if one is known."""
        if self.mode == "basic" and self.username:
            return basic_header(self.username, self.password)
        if self.mode == "bearer":
            cached = self._tokens.get(scope)
            if cached and cached[1] > time.monotonic():
                return "Bearer " + cached[0]
        return None

    def has_token(self, scope: str) -> bool:
        cached = self._tokens.get(scope)
        return cached is not None and cached[1] > time.monotonic()

    async def answer(
        self, http: httpx.AsyncClient, response: httpx.Response, scope: str, sent: str | None
    ) -> bool:
        """Learn from a 401 to a request sent with ``sent`` (its Authorization header);
        True if sending it again may now succeed."""
        current = self.header(scope)
        if current is not None and current != sent:
            return True  # another request authenticated meanwhile
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if not self.username or sent is not None:
                return False
            self.mode = "basic"
            return True
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        self.mode, self.bearer = "bearer", challenge
        await self.fetch_token(http, scope)
        return self.header(scope) != sent

    async def fetch_token(self, http: httpx.AsyncClient, scope: str) -> None:
        assert self.bearer is not None
        params: list[tuple[str, str | int | float | bool | None]] = []
        if self.bearer.params.get("service"):
            params.append(("service", self.bearer.params["service"]))
        for s in scope.split(" "):
            if s:
                params.append(("scope", s))
        headers = {}
        if self.username:
            headers["Authorization"] = basic_header(self.username, self.password)
            params.append(("account", self.username))
        try:
            r = await http.get(self.bearer.params["realm"], params=params, headers=headers)
        except httpx.HTTPError as e:
            raise RemoteAuthError(f"token service unreachable: {e}") from e
        if r.status_code != 200:
            raise RemoteAuthError(
                f"token service answered {r.status_code}: {r.text[:200]}", r.status_code
            )
        body = r.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RemoteAuthError("token service answer has no token")
        ttl = body.get("expires_in")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else 60.0
        self._tokens[scope] = (token, time.monotonic() + max(ttl - 10, ttl / 2))
