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
import concurrent.futures
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TREE))

import bcrypt  # noqa: E402
import registry_bench as rb  # noqa: E402
from projects_setup import PASSWORDS, Server, Shape, seed, write_images  # noqa: E402

TARGET = 0.90  # the issue: within 10 % of the registry without projects


def log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


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
    p.add_argument(
        "--workers", type=int, default=0, help="http.workers of both servers (0: the default)"
    )
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
    for server in servers:
        server.workers = args.workers
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
            asyncio.run(seed(s.database_url, images, shape, members))
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
