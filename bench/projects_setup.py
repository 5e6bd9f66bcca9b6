"""What bench/projects_bench.py compares: the projects, members, repositories and images
both servers hold, written straight into their databases and blob directories (pushing
10,000 images through the API takes minutes per server), and the servers themselves."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import registry_bench as rb
from sqlalchemy import insert, select

from registry.meta.db import make_engine
from registry.meta.migrate import ensure_schema
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from registry.projects import store as project_store
from registry.projects.tables import project_members, projects
from registry.quotas import store as quota_store

TREE = Path(__file__).resolve().parent.parent
SERVICE = "wharf-bench"

PASSWORDS = {"admin": "admin-bench-pw", "member": "member-bench-pw", "ruler": "ruler-bench-pw"}
DEFAULT_PROJECT = "library"
STATIC_GROUPS = 50  # g000.. in auth.policy.groups, ten users each
OTHER_USERS = 2000  # u0000.. : the members that are not the bench's callers
ROLES = ("guest", "developer", "maintainer", "owner")


# --------------------------------------------------------------------------- the content


@dataclass
class Shape:
    n_projects: int
    n_members: int
    n_repos: int

    def project(self, i: int) -> str:
        return f"p{i:04d}"

    @property
    def per_project(self) -> int:
        return max(1, self.n_repos // self.n_projects)

    def repos(self) -> list[str]:
        return [
            f"{self.project(i % self.n_projects)}/app{i // self.n_projects:02d}"
            for i in range(self.n_repos)
        ]

    def pull_repo(self, index: int) -> str:
        """The repository connection ``index`` pulls (one per project, round the list)."""
        return f"{self.project(index % self.n_projects)}/app00"

    @property
    def quota_project(self) -> str:
        return self.project(self.n_projects - 1)

    @property
    def free_project(self) -> str:
        return self.project(self.n_projects - 2)

    def members(self, i: int) -> list[tuple[str, str, str]]:
        """(kind, name, role) of project ``i``: ``member`` (a developer, as a user or
        through ``bench-devs``), then other users and static groups of every role."""
        own = ("user", "member") if i % 2 == 0 else ("group", "bench-devs")
        out = [(*own, "developer")]
        groups = min(STATIC_GROUPS, self.n_members // 4)
        users = self.n_members - 1 - groups
        for k in range(users):
            out.append(("user", f"u{(i * 7 + k) % OTHER_USERS:04d}", ROLES[(i + k) % 4]))
        for k in range(groups):
            out.append(("group", f"g{(i + k) % STATIC_GROUPS:03d}", ROLES[(i + k + 1) % 4]))
        if not any(role == "owner" for _, _, role in out):
            kind, name, _ = out[1]
            out[1] = (kind, name, "owner")
        return out


def policy() -> dict[str, Any]:
    groups: dict[str, list[str]] = {
        f"g{g:03d}": [f"u{g * 10 + j:04d}" for j in range(10)] for g in range(STATIC_GROUPS)
    }
    groups["bench-devs"] = ["member"]
    groups["bench-ci"] = ["ruler"]
    groups["g000"].append("member")
    groups["g001"].append("ruler")
    return {
        "admins": {"users": ["admin"]},
        "groups": groups,
        "rules": [
            {"repository": "p*/*", "users": ["ruler"], "actions": ["pull", "push"]},
            {"repository": "library/*", "authenticated": True, "actions": ["pull"]},
        ],
    }


def _blob_file(root: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    directory = root / "blobs" / "sha256" / hexdigest[:2] / hexdigest
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").write_bytes(data)
    return f"sha256:{hexdigest}"


@dataclass
class Images:
    """One image per repository: its own config, a shared layer."""

    layer: tuple[str, int]
    by_repo: dict[str, tuple[tuple[str, int], tuple[str, int]]]  # repo -> (config, manifest)


def write_images(shape: Shape, root: Path) -> Images:
    layer = random.Random(15).randbytes(1024)
    layer_digest = _blob_file(root, layer)
    by_repo = {}
    for repo in shape.repos():
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "config": {"Labels": {"repo": repo}}}
        ).encode()
        config_digest = _blob_file(root, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": rb.OCI_MANIFEST,
                "config": {
                    "mediaType": rb.OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [{"mediaType": rb.OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
            }
        ).encode()
        by_repo[repo] = ((config_digest, len(config)), (_blob_file(root, manifest), len(manifest)))
    return Images((layer_digest, len(layer)), by_repo)


def seed_content(conn: Any, images: Images) -> None:
    """Repositories, blobs, links, manifests and tags, as pushes leave them."""
    now = datetime.now(UTC)
    names = list(images.by_repo)
    conn.execute(insert(repositories), [{"name": n, "created_at": now} for n in names])
    repo_id = dict(conn.execute(select(repositories.c.name, repositories.c.id)).all())
    blob_rows = [{"digest": images.layer[0], "size": images.layer[1], "created_at": now}]
    blob_rows += [
        {"digest": c[0], "size": c[1], "created_at": now} for c, _ in images.by_repo.values()
    ]
    conn.execute(insert(blobs), blob_rows)
    links = []
    for name, (config, _) in images.by_repo.items():
        for digest in (config[0], images.layer[0]):
            links.append({"repository_id": repo_id[name], "digest": digest, "created_at": now})
    conn.execute(insert(repository_blobs), links)
    conn.execute(
        insert(manifests),
        [
            {
                "repository_id": repo_id[name],
                "digest": m[0],
                "media_type": rb.OCI_MANIFEST,
                "size": m[1],
                "created_at": now,
            }
            for name, (_, m) in images.by_repo.items()
        ],
    )
    manifest_id = dict(conn.execute(select(manifests.c.repository_id, manifests.c.id)).all())
    conn.execute(
        insert(manifest_blobs),
        [
            {"manifest_id": manifest_id[repo_id[name]], "digest": digest}
            for name, (config, _) in images.by_repo.items()
            for digest in (config[0], images.layer[0])
        ],
    )
    conn.execute(
        insert(tags),
        [
            {
                "repository_id": repo_id[name],
                "name": "latest",
                "manifest_id": manifest_id[repo_id[name]],
                "updated_at": now,
            }
            for name in names
        ],
    )


def seed_projects(conn: Any, shape: Shape, with_members: bool) -> None:
    """A: the projects with members and a quota on ``quota_project``; B: the rows
    migration 0011 makes (no owner, no member). Both: the usage recounted by the quota
    feature's own recount, the revision raised."""
    now = datetime.now(UTC)
    names = [DEFAULT_PROJECT] + [shape.project(i) for i in range(shape.n_projects)]
    conn.execute(
        insert(projects),
        [
            {
                "name": name,
                "public": False,
                "description": "",
                "owner": None,
                "quota_bytes": None,
                "created_by": "bench" if with_members else "migration",
                "created_at": now,
                "updated_at": now,
            }
            for name in names
        ],
    )
    if with_members:
        ids = dict(conn.execute(select(projects.c.name, projects.c.id)).all())
        rows = [
            {
                "project_id": ids[shape.project(i)],
                "kind": kind,
                "name": name,
                "role": role,
                "added_by": "admin",
                "added_at": now,
            }
            for i in range(shape.n_projects)
            for kind, name, role in shape.members(i)
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(project_members), rows[start : start + 5000])
        assert quota_store.set_quota(conn, shape.quota_project, 2**50)
    project_store.bump(conn)
    quota_store.recount(conn, DEFAULT_PROJECT)


async def seed(url: str, images: Images, shape: Shape, with_members: bool) -> None:
    await ensure_schema(url)
    engine = make_engine(url, poolsize=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(seed_content, images)
            await conn.run_sync(seed_projects, shape, with_members)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str  # "A" or "B"
    root: Path
    database_url: str
    user: str  # whose credentials the bench sends
    push_projects: list[tuple[str, str]]  # (label, project) pushed into
    proc: subprocess.Popen[bytes] | None = None
    target: rb.Target | None = None
    tokens: dict[int, str] = field(default_factory=dict)
    workers: int = 0  # http.workers: 0 is the default (one per CPU)

    @property
    def basic(self) -> str:
        raw = f"{self.user}:{PASSWORDS[self.user]}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def config(self, workdir: Path, port: int, token: bool) -> Path:
        auth: dict[str, Any] = {
            "htpasswd": {"realm": SERVICE, "path": str(workdir / "htpasswd")},
            "policy": policy(),
        }
        if token:
            keys = workdir / "keys"
            auth["token"] = {
                "realm": f"http://127.0.0.1:{port}/token",
                "service": SERVICE,
                "issuer": "wharf-bench-issuer",
                "rootcertbundle": str(keys / "token.crt"),
            }
            auth["tokenserver"] = {
                "key": str(keys / "token.key"),
                "certificate": str(keys / "token.crt"),
                "expiration": "2h",  # one token per client for the whole run
            }
        cfg: dict[str, Any] = {
            "version": "0.1",
            "http": {"addr": f"127.0.0.1:{port}", "workers": self.workers},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root)},
                "delete": {"enabled": True},
            },
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "auth": auth,
        }
        if self.database_url:
            cfg["database"] = {"url": self.database_url}
        path = workdir / f"{self.name}-{'token' if token else 'basic'}.yml"
        path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        return path

    def start(self, workdir: Path, token: bool) -> None:
        port = rb.free_port()
        config = self.config(workdir, port, token)
        logfile = workdir / f"{self.name}.log"
        with logfile.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry.cli", "serve", str(config)],
                cwd=TREE, env={**os.environ, "PYTHONPATH": str(TREE)},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        rb.wait_ready(url, self.proc, str(logfile), path="/healthz")
        self.target = rb.Target(self.name, url, self.proc.pid)
        self.tokens = {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def conn(self, headers: dict[str, str] | None = None) -> rb.Conn:
        assert self.target is not None
        return rb.Conn(self.target.host, self.target.port, 60.0, headers)

    def token(self, index: int, repo: str) -> str:
        """A bearer token for ``repo``'s pull scope (fetched once per client)."""
        if index not in self.tokens:
            conn = self.conn({"Authorization": self.basic})
            try:
                query = urllib.parse.urlencode(
                    {"service": SERVICE, "scope": f"repository:{repo}:pull"}
                )
                r = rb.expect(conn.request("GET", f"/token?{query}"), 200, "GET /token")
            finally:
                conn.close()
            body = json.loads(r.body)
            if "pull" not in body.get("scope", ""):
                raise rb.BenchError(f"{self.name}: token for {repo} grants {body.get('scope')!r}")
            self.tokens[index] = body["token"]
        return self.tokens[index]
