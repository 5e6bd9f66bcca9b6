"""Projects in tests: users with one role each in project ``team``, a public project
``pub``, and servers in Basic and token mode that hold them."""

from __future__ import annotations

import base64
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

from tests.support.auth import token_config, write_htpasswd
from tests.support.oci import push_image
from tests.support.server import WharfServer, _merge

USERS = {u: f"{u}-pw" for u in ("admin", "olga", "mary", "dave", "gina", "eve", "gus", "ci")}
# no rules: only roles give access (admins aside); ci may push anywhere by a rule
POLICY: dict[str, Any] = {
    "admins": {"users": ["admin"]},
    "groups": {"devs": ["gus"]},
    "rules": [{"repository": "ci-*/*", "users": ["ci"], "actions": ["pull", "push"]}],
}
ROLES = {"olga": "owner", "mary": "maintainer", "dave": "developer", "gina": "guest"}


def basic_config(workdir: Path, **projects: Any) -> dict[str, Any]:
    htpasswd = write_htpasswd(workdir / "htpasswd", USERS)
    return {
        "http": {"workers": 1},
        "storage": {"delete": {"enabled": True}},
        "auth": {"htpasswd": {"realm": "wharf-test", "path": str(htpasswd)}, "policy": POLICY},
        "projects": projects,
    }


def as_user(server: WharfServer, user: str | None) -> httpx.Client:
    return server.client(auth=(user, USERS[user]) if user else None)


def error(r: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = r.json()["errors"][0]
    return found


def make_team(server: WharfServer, token: bool = False) -> None:
    """Project team (private) with one member of each role, group devs as developer,
    and pub (public); an image in each."""
    with as_user(server, "admin") as admin:
        r = admin.post("/api/projects", json={"name": "team", "description": "the team"})
        assert r.status_code == 201, r.text
        for user, role in ROLES.items():
            r = admin.put(f"/api/projects/team/members/user/{user}", json={"role": role})
            assert r.status_code == 201, r.text
        r = admin.post(
            "/api/projects/team/members",
            json={"kind": "group", "name": "devs", "role": "developer"},
        )
        assert r.status_code == 201, r.text
        assert admin.post("/api/projects", json={"name": "pub", "public": True}).status_code == 201
    for name in ("team/app", "pub/base"):
        scope = f"repository:{name}:pull,push"
        with bearer(server, "admin", scope) if token else as_user(server, "admin") as admin:
            push_image(admin, name, "v1", [f"{name} layer".encode()])


def bearer(server: WharfServer, user: str | None, scope: str) -> httpx.Client:
    with server.client(auth=(user, USERS[user]) if user else None) as c:
        r = c.get("/token", params={"service": "wharf-test", "scope": scope})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
    return server.client(headers={"Authorization": f"Bearer {token}"})


def start_basic(workdir: Path) -> WharfServer:
    """A Basic-mode server (htpasswd, no rules) with team and pub made."""
    server = WharfServer(workdir / "server", basic_config(workdir)).start()
    make_team(server)
    return server


def start_team(workdir: Path, mode: str) -> WharfServer:
    """:func:`start_basic` or :func:`start_token`, by ``mode`` ("basic" or "token")."""
    return start_basic(workdir) if mode == "basic" else start_token(workdir)


def start_token(workdir: Path) -> WharfServer:
    """A token-mode server (the built-in token service) with team and pub made."""
    server = WharfServer(workdir / "server")
    extra = token_config(workdir, server.port, POLICY)
    extra["auth"]["htpasswd"]["path"] = str(write_htpasswd(workdir / "htpasswd", USERS))
    _merge(server.config, {**extra, "http": {"workers": 1}})
    _merge(server.config, {"storage": {"delete": {"enabled": True}}})
    server.auth = True
    server.start()
    make_team(server, token=True)
    return server


class ChallengeAuth(httpx.Auth):
    """What a registry client does: Basic credentials first; on a ``Bearer`` challenge, a
    token from the challenge's realm for its service and scope (with the credentials, or
    anonymously), then the request again with it. Works in Basic and in token mode."""

    requires_response_body = True

    def __init__(self, user: str | None, password: str | None = None) -> None:
        self.basic: str | None = None
        if user is not None:
            secret = USERS[user] if password is None else password
            pair = base64.b64encode(f"{user}:{secret}".encode()).decode()
            self.basic = f"Basic {pair}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.basic:
            request.headers["Authorization"] = self.basic
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {k: params[k] for k in ("service", "scope") if k in params}
        asked = httpx.Request("GET", params["realm"], params=query)
        if self.basic:
            asked.headers["Authorization"] = self.basic
        answer = yield asked
        if answer.status_code != 200:
            return
        request.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        yield request


def registry_client(
    server: WharfServer, user: str | None, password: str | None = None
) -> httpx.Client:
    """An HTTP client acting as ``user`` (None: anonymous; the password of ``USERS``
    unless given) the way registry clients do (see ``ChallengeAuth``), on /v2/ and
    /api/ alike, in either mode."""
    return server.client(auth=ChallengeAuth(user, password))


def refused_status(server: WharfServer, user: str | None) -> int:
    """What /v2/ answers a request the caller may not make: 401 without credentials or
    in token mode (``insufficient_scope``), else 403."""
    return 401 if user is None or "tokenserver" in server.config["auth"] else 403
