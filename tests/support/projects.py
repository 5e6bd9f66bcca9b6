"""Projects in tests: users with one role each in project ``team``, a public project
``pub``, and servers in Basic and token mode that hold them."""

from __future__ import annotations

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
