"""How the catalog and tags list answer with 100,000 repositories and 100,000 tags.

Fills a fresh Wharf database through the schema's own migrations (rows inserted in bulk,
as many pushes would leave them), starts ``wharf serve`` on it and times paginated
``GET /v2/_catalog`` and ``GET /v2/<name>/tags/list`` requests: first page, a page in the
middle (``last=``) and the last page. Prints figures; asserts nothing.

    .venv/bin/python bench/catalog_scale.py [--repos 100000] [--tags 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert

from registry.meta.migrate import upgrade
from registry.meta.tables import manifests, repositories, tags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(db: Path, n_repos: int, n_tags: int) -> None:
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{db}"))
    engine = create_engine(f"sqlite:///{db}")
    now = datetime.now(UTC)
    digest = "sha256:" + hashlib.sha256(b"m").hexdigest()
    with engine.begin() as conn:
        conn.execute(
            insert(repositories),
            [{"name": f"team{i % 100:02d}/app{i:06d}", "created_at": now} for i in range(n_repos)],
        )
        conn.execute(
            insert(manifests),
            [
                {
                    "repository_id": i + 1,
                    "digest": digest,
                    "media_type": "x",
                    "size": 1,
                    "created_at": now,
                }
                for i in range(n_repos)
            ],
        )
        conn.execute(
            insert(tags),
            [
                {"repository_id": 1, "name": f"v{i:06d}", "manifest_id": 1, "updated_at": now}
                for i in range(n_tags)
            ],
        )
    engine.dispose()


def timed(client: httpx.Client, url: str, reps: int = 50) -> tuple[float, float, int]:
    times, count = [], 0
    for _ in range(reps):
        t = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        body = r.json()
        count = len(body.get("repositories") or body.get("tags") or [])
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repos", type=int, default=100_000)
    p.add_argument("--tags", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="wharf-scale-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        t = time.perf_counter()
        fill(root / "wharf.db", args.repos, args.tags)
        print(
            f"filled {args.repos} repositories, {args.tags} tags in {time.perf_counter() - t:.1f}s"
        )
        port = free_port()
        cfg = Path(tmp) / "config.yml"
        cfg.write_text(
            f"http: {{addr: 127.0.0.1:{port}}}\n"
            "log: {level: warn, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {root}}}}}\n"
        )
        proc = subprocess.Popen([sys.executable, "-m", "registry.cli", "serve", str(cfg)])
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                for _ in range(100):
                    try:
                        c.get("/v2/")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                mid_repo = f"team50/app{args.repos // 2:06d}"
                rows = [
                    ("catalog n=100, first page", "/v2/_catalog?n=100"),
                    ("catalog n=100, middle (last=)", f"/v2/_catalog?n=100&last={mid_repo}"),
                    ("catalog n=1000, first page", "/v2/_catalog?n=1000"),
                    ("tags list n=100, first page", "/v2/team00/app000000/tags/list?n=100"),
                    (
                        "tags list n=100, middle",
                        f"/v2/team00/app000000/tags/list?n=100&last=v{args.tags // 2:06d}",
                    ),
                    (
                        "tags list n=1000, last page",
                        f"/v2/team00/app000000/tags/list?n=1000&last=v{args.tags - 500:06d}",
                    ),
                ]
                print(f"{'request':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'items':>6s}")
                for label, url in rows:
                    p50, p99, count = timed(c, url)
                    print(f"{label:34s} {p50:8.2f} {p99:8.2f} {count:6d}")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
