"""What projects (issue #15) cost on the request path: manifest GETs in Basic and token
mode, and a push with quota checks, on a registry with 1,000 projects of 20 members each
against the same registry without members.

Two ``wharf serve`` (this tree, default settings: one worker per CPU, log level warn,
access log off) with the same auth configuration (an htpasswd file with ``admin``,
``member`` and ``ruler``; ``auth.policy`` with ``admins``, static groups and one rule
giving ``ruler`` pull and push on ``p*/*``), each on its own data directory and database
(SQLite, or PostgreSQL with ``--start-postgres`` / ``--database-a`` and ``--database-b``):

* **A, with projects**: ``--projects`` projects (``p0000``...), ``--members`` members each
  (users and groups of ``auth.policy.groups``, every role), ``--repos`` repositories
  spread over them, each with a small image tagged ``latest``. ``member`` is a developer
  of every project: as a user in the even ones, through its group ``bench-devs`` in the
  odd ones. The project ``p<last>`` has a quota (never reached).
* **B, without projects**: the same repositories and images, and the project rows
  migration 0011 makes on upgrade (one per first path component, no owner, no member,
  no quota): what a registry that does not use projects holds. ``ruler`` reaches the
  repositories through its rule, as callers did before projects.

The content is written straight into the databases and the storage (SQL through the
schema's tables and the features' own store functions, blob files hard-linked between the
two data directories) before the servers start; pushing 10,000 images through the API
would take minutes per server (the push figures below tell how many).

Measured, rounds alternating A and B (the order reversed every round):

* manifest GET by tag at each ``--concurrency``, Basic mode (the credentials of ``member``
  on A, ``ruler`` on B) and token mode (the built-in token service; every connection gets
  one bearer token for its repository's pull scope before the runs). Connection ``i``
  pulls ``p<i>/app00:latest``, so concurrent clients hit different projects;
* a push (a config blob, a 4 KiB layer, the manifest PUT; every push a new image) in Basic
  mode at each ``--push-concurrency``: into A's project with a quota, into A's project
  ``p<last-1>`` without one, and into B's ``p<last>`` (no quota).

Prints req/s (pushes/s), p50 and p99 and the ratios A/B with the issue's target (within
10 %: A/B >= 0.90) marked met or not. A script that prints figures, not a test::

    .venv/bin/python bench/projects_bench.py [--rounds 3] [--duration 5] [--start-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TREE))

import bcrypt  # noqa: E402
import registry_bench as rb  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from registry.meta.db import make_engine  # noqa: E402
from registry.meta.migrate import ensure_schema  # noqa: E402
from registry.meta.tables import (  # noqa: E402
    blobs,
    manifest_blobs,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from registry.projects import store as project_store  # noqa: E402
from registry.projects.tables import project_members, projects  # noqa: E402
from registry.quotas import store as quota_store  # noqa: E402

PASSWORDS = {"admin": "admin-bench-pw", "member": "member-bench-pw", "ruler": "ruler-bench-pw"}
DEFAULT_PROJECT = "library"
SERVICE = "wharf-bench"
TARGET = 0.90  # the issue: within 10 % of the registry without projects
STATIC_GROUPS = 50  # g000.. in auth.policy.groups, ten users each
OTHER_USERS = 2000  # u0000.. : the members that are not the bench's callers
ROLES = ("guest", "developer", "maintainer", "owner")


def log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


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


async def _seed(url: str, images: Images, shape: Shape, with_members: bool) -> None:
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
            "http": {"addr": f"127.0.0.1:{port}"},
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
        wait_up(url, self.proc, logfile)
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


def wait_up(url: str, proc: subprocess.Popen[bytes], logfile: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{rb.tail(str(logfile))}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout}s:\n{rb.tail(str(logfile))}")


# --------------------------------------------------------------------------- measuring


@dataclass
class Agg:
    """One server's figures in one row, over every round."""

    count: int = 0
    seconds: float = 0.0
    rounds: list[float] = field(default_factory=list)  # req/s of each round
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    srv_cpu: float = 0.0
    wall: float = 0.0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def add(self, count: int, seconds: float, lat: list[float], errors: int) -> None:
        self.count += count
        self.seconds += seconds
        self.rounds.append(count / seconds if seconds else 0.0)
        self.latencies.extend(lat)
        self.errors += errors


def get_request(server: Server, mode: str, shape: Shape, index: int) -> tuple[str, dict[str, str]]:
    """Path and headers of the manifest GET of connection ``index``."""
    repo = shape.pull_repo(index)
    auth = server.basic if mode == "basic" else f"Bearer {server.token(index, repo)}"
    return f"/v2/{repo}/manifests/latest", {"Accept": rb.MANIFEST_ACCEPT, "Authorization": auth}


def get_makers(server: Server, mode: str, shape: Shape) -> Callable[[int], Callable[[int], bytes]]:
    t = server.target
    assert t is not None

    def make_for(index: int) -> Callable[[int], bytes]:
        path, headers = get_request(server, mode, shape, index)
        lines = [f"GET {path} HTTP/1.1", f"Host: {t.host}:{t.port}", "User-Agent: registry-bench"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        req = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return lambda _seq: req

    return make_for


def check_gets(server: Server, mode: str, shape: Shape, clients: int) -> None:
    """Every client's request answers 200 once (tokens fetched here), before measuring."""
    conn = server.conn()
    try:
        for i in range(clients):
            path, headers = get_request(server, mode, shape, i)
            rb.expect(conn.request("GET", path, headers), 200, f"{server.name} {mode} GET {path}")
    finally:
        conn.close()


def measure_gets(
    servers: list[Server], mode: str, shape: Shape, args: argparse.Namespace
) -> dict[int, dict[str, Agg]]:
    runner = rb.loop_runner(True)
    seq = itertools.count()
    out: dict[int, dict[str, Agg]] = {c: {s.name: Agg() for s in servers} for c in args.conc}
    for server in servers:
        check_gets(server, mode, shape, max(args.conc))
    for rnd in range(args.rounds):
        for conc in args.conc:
            order = servers if rnd % 2 == 0 else servers[::-1]
            for server in order:
                t = server.target
                assert t is not None
                tree = t.tree()
                s0, w0 = rb.cpu_seconds(tree), time.perf_counter()
                n, lat, errors, secs = runner(
                    rb._rate_run(
                        t, "manifest-get", conc, args.warmup, args.duration, seq,
                        make_for=get_makers(server, mode, shape),
                    )
                )  # fmt: skip
                agg = out[conc][server.name]
                agg.add(n, secs, lat, errors)
                agg.srv_cpu += rb.cpu_seconds(tree) - s0
                agg.wall += time.perf_counter() - w0
            log(
                f"{mode} manifest GET c={conc} round {rnd + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v.rounds[-1]:.0f}/s" for k, v in out[conc].items())
            )
    return out


def push_image(conn: rb.Conn, repo: str, seq: int) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "bench.seq": seq}).encode()
    layer = os.urandom(4096)
    config_digest = rb.put_small_blob(conn, repo, config)
    layer_digest = rb.put_small_blob(conn, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": rb.OCI_MANIFEST,
            "config": {"mediaType": rb.OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": rb.OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    ).encode()
    r = conn.request(
        "PUT", f"/v2/{repo}/manifests/v{seq}", {"Content-Type": rb.OCI_MANIFEST}, body=manifest
    )
    rb.expect(r, 201, f"manifest PUT {repo}:v{seq}")


def push_run(server: Server, repo: str, pushes: int, conc: int, seq: itertools.count[int]) -> Agg:
    """``pushes`` images into ``repo`` from ``conc`` connections at once."""

    def client(n: int) -> list[float]:
        conn = server.conn({"Authorization": server.basic})
        out = []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                push_image(conn, repo, next(seq))
                out.append(time.perf_counter() - t0)
        finally:
            conn.close()
        return out

    shares = [pushes // conc + (1 if i < pushes % conc else 0) for i in range(conc)]
    assert server.target is not None
    tree = server.target.tree()
    s0, w0 = rb.cpu_seconds(tree), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(conc) as pool:
        results = list(pool.map(client, shares))
    wall = time.perf_counter() - w0
    agg = Agg()
    agg.add(pushes, wall, [x for r in results for x in r], 0)
    agg.srv_cpu, agg.wall = rb.cpu_seconds(tree) - s0, wall
    return agg


def measure_pushes(servers: list[Server], args: argparse.Namespace) -> dict[int, dict[str, Agg]]:
    cells = [(f"{s.name} {label}", s, f"{p}/push") for s in servers for label, p in s.push_projects]
    out: dict[int, dict[str, Agg]] = {
        c: {label: Agg() for label, _, _ in cells} for c in args.pconc
    }
    seq = itertools.count()
    for _, server, repo in cells:  # the repository's first push makes it: not measured
        push_run(server, repo, 2, 1, seq)
    for rnd in range(args.rounds):
        for conc in args.pconc:
            order = cells if rnd % 2 == 0 else cells[::-1]
            for label, server, repo in order:
                got = push_run(server, repo, args.pushes, conc, seq)
                agg = out[conc][label]
                agg.add(got.count, got.seconds, got.latencies, 0)
                agg.srv_cpu += got.srv_cpu
                agg.wall += got.wall
            log(
                f"push c={conc} round {rnd + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v.rounds[-1]:.1f}/s" for k, v in out[conc].items())
            )
    return out


# --------------------------------------------------------------------------- report


def ms(lat: list[float], q: float) -> str:
    return f"{1000 * rb.pct(sorted(lat), q):.2f}"


def rate_rows(title: str, unit: str, rows: dict[int, dict[str, Agg]], what: str) -> list[str]:
    table = []
    for conc, cells in rows.items():
        for name, a in cells.items():
            table.append(
                [
                    what, str(conc), name, f"{a.rate:.1f}",
                    f"[{min(a.rounds):.1f}..{max(a.rounds):.1f}]",
                    ms(a.latencies, 0.5), ms(a.latencies, 0.99), str(a.errors),
                    rb.cpu_pct(a.srv_cpu, a.wall),
                ]
            )  # fmt: skip
    hdr = ["workload", "conc", "server", unit, "rounds", "p50 ms", "p99 ms", "errors", "srv CPU"]
    return [f"\n== {title} ==", rb.table(hdr, table, {1, 3, 4, 5, 6, 7, 8})]


def ratio_row(what: str, conc: int, label: str, a: Agg, b: Agg) -> list[str]:
    ratio = a.rate / b.rate if b.rate else float("inf")
    p50 = rb.pct(sorted(b.latencies), 0.5) / rb.pct(sorted(a.latencies), 0.5)
    # the rounds of A and B ran back to back: their ratios drift less than the totals
    paired = sorted(x / y for x, y in zip(a.rounds, b.rounds, strict=True) if y)
    spread = f"{paired[len(paired) // 2]:.3f} [{paired[0]:.2f}..{paired[-1]:.2f}]"
    met = "yes" if ratio >= TARGET else "NO"
    row = [what, str(conc), label, f"{ratio:.3f}", spread, f"{p50:.3f}", f">= {TARGET:.2f}"]
    return [*row, met]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--projects", type=int, default=1000)
    p.add_argument("--members", type=int, default=20, help="members per project")
    p.add_argument("--repos", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per GET run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--concurrency", default="1,32", help="connections of the GET runs")
    p.add_argument("--pushes", type=int, default=40, help="images pushed per push run")
    p.add_argument("--push-concurrency", default="1,4", help="connections of the push runs")
    p.add_argument("--modes", default="basic,token", help="basic, token or both")
    p.add_argument("--database-a", default="", help="an empty database for A (PostgreSQL URL)")
    p.add_argument("--database-b", default="", help="an empty database for B")
    p.add_argument(
        "--start-postgres", action="store_true",
        help="a private PostgreSQL (tests/support/postgres.py) with one database per server",
    )  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.conc = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.pconc = [int(c) for c in args.push_concurrency.split(",") if c.strip()]
    modes = [m for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"basic", "token"} or bool(args.database_a) != bool(args.database_b):
        p.error("--modes takes basic,token; --database-a and --database-b go together")
    shape = Shape(args.projects, args.members, args.repos)
    if shape.n_projects < 2 or shape.n_repos < shape.n_projects:
        p.error("at least 2 projects and one repository per project")

    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="wharf-projects-bench-"))
    stoppers: list[Callable[[], None]] = []
    servers = [
        Server("A", workdir / "A", args.database_a, "member",
               [("quota", shape.quota_project), ("no quota", shape.free_project)]),
        Server("B", workdir / "B", args.database_b, "ruler", [("no quota", shape.quota_project)]),
    ]  # fmt: skip
    try:
        if args.start_postgres:
            from tests.support.postgres import PostgresCluster, find_bindir

            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("--start-postgres: PostgreSQL is not installed")
            cluster = PostgresCluster(bindir).start()
            stoppers.append(cluster.stop)
            for s in servers:
                s.database_url = cluster.create_database(f"bench_{s.name.lower()}")
            log(f"PostgreSQL on port {cluster.port}")
        database = "PostgreSQL" if servers[0].database_url else "SQLite"
        for s in servers:
            s.root.mkdir(parents=True)
            if not s.database_url:
                s.database_url = f"sqlite+aiosqlite:///{s.root / 'wharf.db'}"
        t0 = time.perf_counter()
        images = write_images(shape, servers[0].root)
        shutil.copytree(servers[0].root / "blobs", servers[1].root / "blobs", copy_function=os.link)
        files_s = time.perf_counter() - t0
        seed_s = {}
        for s, members in zip(servers, (True, False), strict=True):
            t0 = time.perf_counter()
            asyncio.run(_seed(s.database_url, images, shape, members))
            seed_s[s.name] = time.perf_counter() - t0
        log(
            f"seeded {shape.n_repos} images: files {files_s:.1f}s, databases "
            + ", ".join(f"{k} {v:.1f}s" for k, v in seed_s.items())
        )
        (workdir / "htpasswd").write_text(
            "".join(
                f"{u}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for u, pw in PASSWORDS.items()
            )
        )
        subprocess.run(
            [sys.executable, "-m", "registry.cli", "auth", "keygen", str(workdir / "keys")],
            cwd=TREE, env={**os.environ, "PYTHONPATH": str(TREE)}, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

        gets: dict[str, dict[int, dict[str, Agg]]] = {}
        pushes: dict[int, dict[str, Agg]] = {}
        for mode in modes:
            for s in servers:
                s.start(workdir, token=mode == "token")
                stoppers.append(s.stop)
            log(
                f"{mode} mode: "
                + ", ".join(
                    f"{s.name} {s.target.url} pid {s.target.pid}" for s in servers if s.target
                )
            )
            try:
                gets[mode] = measure_gets(servers, mode, shape, args)
                if mode == "basic" and args.pushes > 0:
                    pushes = measure_pushes(servers, args)
            finally:
                for s in servers:
                    s.stop()
    finally:
        for stop in reversed(stoppers):
            stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")

    print("projects_bench: " + " ".join(sys.argv[1:] if argv is None else argv))
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}; "
        f"python {platform.python_version()}; ran {time.time() - started:.0f}s; {database}"
    )
    print(
        f"A: {shape.n_projects} projects x {shape.n_members} members (users and groups), "
        f"{shape.n_repos} repositories, quota on {shape.quota_project}; B: the same "
        f"repositories, {shape.n_projects} project rows without members (as migration 0011)"
    )
    print(
        f"seeding by SQL + blob files: files {files_s:.1f}s, A {seed_s['A']:.1f}s, "
        f"B {seed_s['B']:.1f}s; GET runs {args.warmup:g}s warmup + {args.duration:g}s, "
        f"{args.rounds} rounds alternating A and B; A as 'member' (a role), B as 'ruler' "
        "(an auth.policy rule)"
    )
    out: list[str] = []
    ratios = []
    for mode, rows in gets.items():
        out += rate_rows(f"manifest GET by tag, {mode} mode", "req/s", rows, f"GET {mode}")
        for conc, cells in rows.items():
            ratios.append(ratio_row(f"GET {mode}", conc, "A / B", cells["A"], cells["B"]))
    if pushes:
        title = f"push (config + 4 KiB layer + manifest PUT), Basic, {args.pushes} per run"
        out += rate_rows(title, "pushes/s", pushes, "push")
        for conc, cells in pushes.items():
            quota, free, b = cells["A quota"], cells["A no quota"], cells["B no quota"]
            ratios.append(ratio_row("push", conc, "A quota / B", quota, b))
            ratios.append(ratio_row("push", conc, "A quota / A no quota", quota, free))
        rate = max(a.rate for a in pushes[max(pushes)].values())
        out.append(
            f"   (pushing the {shape.n_repos} seeded images through the API at this rate: "
            f"about {shape.n_repos / rate:.0f}s per server)"
        )
    hdr = ["workload", "conc", "ratio of", "rate", "per round", "p50 B/A", "target", "met"]
    out += [
        "\n== A / B (target: within 10 %, on the rate over all rounds) ==",
        "   per round: the median [min..max] of the rounds' ratios (each pair back to back)",
        rb.table(hdr, ratios, {1, 3, 4, 5, 6}),
    ]
    out.append("(2 shared cores: figures vary by 10-30 % between runs; compare within a run)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
