"""Search at scale: generate N tags straight into a fresh database, time searches.

    .venv/bin/python bench/search_bench.py                      # 100,000 tags on SQLite
    .venv/bin/python bench/search_bench.py --tags 20000 --runs 50
    .venv/bin/python bench/search_bench.py --database-url postgresql+asyncpg://...

Every tag gets its own image manifest (config + two layers: one from a pool shared by
many images, one of its own), two labels, a platform and a push time spread over 30
days; repositories are named ``team-<i>/repo-<j>``. Each query runs through
:class:`registry.search.query.SearchService` (the code the API and the UI call: the
SQL, the page's platforms and sizes, the permission filter), one page of 50, and
prints p50/p95/max in milliseconds. Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert

from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifests,
    repositories,
    tags,
)
from registry.search import tables as ms
from registry.search.query import Params, SearchService, parse_query

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PLATFORMS = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7")]
BATCH = 5000


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def generate(url: str, n_tags: int, n_repos: int, seed: int) -> dict[str, Any]:
    """Insert everything with one synchronous engine; returns facts for the queries."""
    rnd = random.Random(seed)
    # asyncpg is async-only: PostgreSQL inserts run through the async engine's sync API
    engine = create_engine(url.replace("+aiosqlite", "")) if url.startswith("sqlite") else None
    now = datetime.now(UTC)
    shared = [digest(f"shared layer {i}") for i in range(200)]
    repos = [
        {"id": i + 1, "name": f"team-{i % 10}/repo-{i:04d}", "created_at": now}
        for i in range(n_repos)
    ]
    rows: dict[str, list[dict[str, Any]]] = {
        "repositories": repos,
        "blobs": [{"digest": d, "size": 30_000_000, "created_at": now} for d in shared],
        "manifests": [],
        "manifest_blobs": [],
        "tags": [],
        "search_tags": [],
        "search_facts": [],
        "search_labels": [],
        "search_platforms": [],
    }
    for i in range(n_tags):
        repo = repos[i % n_repos]
        mid = i + 1
        config, own = digest(f"config {i}"), digest(f"own layer {i}")
        layer = shared[rnd.randrange(len(shared))]
        mdigest = digest(f"manifest {i}")
        pushed = now - timedelta(seconds=rnd.randrange(30 * 86400))
        tag = f"v{i // n_repos}"
        os_, arch, variant = PLATFORMS[i % len(PLATFORMS)]
        rows["blobs"] += [
            {"digest": config, "size": 1500, "created_at": now},
            {"digest": own, "size": 2_000_000, "created_at": now},
        ]
        rows["manifests"].append(
            {
                "id": mid,
                "repository_id": repo["id"],
                "digest": mdigest,
                "media_type": OCI_MANIFEST,
                "artifact_type": OCI_CONFIG,
                "size": 700,
                "subject_digest": None,
                "annotations": None,
                "created_at": pushed,
            }
        )
        rows["manifest_blobs"] += [{"manifest_id": mid, "digest": d} for d in (config, layer, own)]
        rows["tags"].append(
            {"repository_id": repo["id"], "name": tag, "manifest_id": mid, "updated_at": pushed}
        )
        rows["search_tags"].append(
            {
                "repository_id": repo["id"],
                "tag": tag,
                "repository": repo["name"],
                "manifest_id": mid,
                "digest": mdigest,
                "media_type": OCI_MANIFEST,
                "artifact_type": OCI_CONFIG,
                "size": 700,
                "pushed_at": pushed,
            }
        )
        rows["search_facts"].append(
            {
                "manifest_id": mid,
                "config_digest": config,
                "total_size": 32_001_500,
                "detail": json.dumps({"layers": []}),
            }
        )
        rows["search_labels"] += [
            {
                "manifest_id": mid,
                "key": "org.opencontainers.image.source",
                "value": f"https://git.example/{repo['name']}",
            },
            {"manifest_id": mid, "key": "tier", "value": ("web", "worker", "batch")[i % 3]},
        ]
        rows["search_platforms"].append(
            {"manifest_id": mid, "os": os_, "architecture": arch, "variant": variant}
        )
    tables = {
        "repositories": repositories,
        "blobs": blobs,
        "manifests": manifests,
        "manifest_blobs": manifest_blobs,
        "tags": tags,
        "search_tags": ms.search_tags,
        "search_facts": ms.search_facts,
        "search_labels": ms.search_labels,
        "search_platforms": ms.search_platforms,
    }

    def load(conn: Any) -> None:
        for name, table in tables.items():
            data = rows[name]
            for start in range(0, len(data), BATCH):
                conn.execute(insert(table), data[start : start + BATCH])

    if engine is not None:
        with engine.begin() as conn:
            load(conn)
            if url.startswith("sqlite"):
                conn.exec_driver_sql("ANALYZE")
        engine.dispose()
    else:

        async def run() -> None:
            from sqlalchemy.ext.asyncio import create_async_engine

            aengine = create_async_engine(url)
            async with aengine.begin() as conn:
                await conn.run_sync(load)
                await conn.exec_driver_sql("ANALYZE")
            await aengine.dispose()

        asyncio.run(run())
    return {
        "shared_layer": shared[0],
        "own_layer": digest(f"own layer {n_tags // 2}"),
        "recent": (now - timedelta(hours=6)).isoformat(),
        "rows": sum(len(v) for v in rows.values()),
    }


QUERIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("everything, by name", []),
    ("everything, newest first", [("sort", "-pushed")]),
    ("everything, by tag", [("sort", "tag")]),
    ("name substring", [("name", "repo-007")]),
    ("name prefix", [("prefix", "team-3/")]),
    ("tag", [("tag", "v42")]),
    ("shared layer digest", [("digest", "{shared_layer}")]),
    ("own layer digest", [("digest", "{own_layer}")]),
    ("label key=value (1/3)", [("label", "tier=worker")]),
    (
        "label, selective",
        [("label", "org.opencontainers.image.source=https://git.example/team-4/repo-0014")],
    ),
    ("platform linux/arm64", [("platform", "linux/arm64")]),
    ("pushed in the last 6 h", [("pushed_after", "{recent}"), ("sort", "-pushed")]),
    (
        "label + platform + prefix",
        [("label", "tier=web"), ("platform", "linux/amd64"), ("prefix", "team-1/")],
    ),
]


Result = tuple[str, list[float], list[float], int]  # label, wall ms, CPU ms, rows


async def bench(url: str, facts: dict[str, Any], runs: int) -> list[Result]:
    db = Database(url)
    service = SearchService(db)
    results: list[Result] = []

    def one_tenth(name: str) -> bool:
        return name.startswith("team-1/")

    cases: list[tuple[str, list[tuple[str, str]], Callable[[str], bool] | None]] = [
        (label, [(k, v.format(**facts)) for k, v in params], None) for label, params in QUERIES
    ]
    cases.append(("caller sees 1/10 of repositories", [], one_tenth))
    cases.append(("caller sees 1/10, label filter", [("label", "tier=batch")], one_tenth))
    try:
        for label, params, allowed in cases:
            query = parse_query(Params([*params, ("n", "50")]))
            await service.search(query, allowed)  # warm up
            times: list[float] = []
            cpu: list[float] = []
            found = 0
            for _ in range(runs):
                start, start_cpu = time.perf_counter(), time.process_time()
                page = await service.search(query, allowed)
                times.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
                found = len(page.rows)
            results.append((label, times, cpu, found))
        # a deep page: follow the cursor 20 pages down, time each page
        query = parse_query(Params([("n", "50")]))
        times, cpu = [], []
        for _ in range(max(1, runs // 20)):
            q = query
            for _page in range(20):
                start, start_cpu = time.perf_counter(), time.process_time()
                page = await service.search(q, None)
                times.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
                assert page.next_cursor is not None
                q = parse_query(Params([("n", "50"), ("cursor", page.next_cursor)]))
        results.append(("pages 1-20 by cursor", times, cpu, 50))
    finally:
        await db.close()
    return results


def facts_for(n_tags: int) -> dict[str, Any]:
    """The query values of a database generated with ``n_tags`` tags."""
    return {
        "shared_layer": digest("shared layer 0"),
        "own_layer": digest(f"own layer {n_tags // 2}"),
        "recent": (datetime.now(UTC) - timedelta(hours=6)).isoformat(),
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tags", type=int, default=100_000)
    p.add_argument("--repos", type=int, default=1_000)
    p.add_argument("--runs", type=int, default=200, help="timed runs of each query")
    p.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    p.add_argument(
        "--workdir", help="keep the SQLite database here; reuse it if it is already there"
    )
    p.add_argument(
        "--reuse", action="store_true", help="--database-url already holds the generated data"
    )
    p.add_argument("--seed", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="wharf-search-bench-") as tmp:
        where = Path(args.workdir or tmp)
        where.mkdir(parents=True, exist_ok=True)
        url = args.database_url or f"sqlite+aiosqlite:///{where.resolve()}/wharf.db"
        reuse = args.reuse or (
            args.workdir and not args.database_url and (where / "wharf.db").exists()
        )
        if reuse:
            facts = facts_for(args.tags)
            print(f"reusing {url.split('@')[-1]} ({args.tags:,} tags)")
        else:
            asyncio.run(ensure_schema(url))
            start = time.perf_counter()
            facts = generate(url, args.tags, args.repos, args.seed)
            print(
                f"{args.tags:,} tags in {args.repos:,} repositories, {facts['rows']:,} rows "
                f"generated in {time.perf_counter() - start:.1f} s ({url.split(':')[0]})"
            )
        results = asyncio.run(bench(url, facts, args.runs))
    print(
        f"\n{'query (one page of 50)':<38} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}"
        f" {'CPU p50':>8} {'rows':>5}"
    )
    for label, times, cpu, found in results:
        print(
            f"{label:<38} {statistics.median(times):>7.2f} {pct(times, 0.95):>7.2f}"
            f" {max(times):>7.2f} {statistics.median(cpu):>8.2f} {found:>5}"
        )
    print("\n(wall-clock p50/p95/max; CPU p50: the process's CPU time, all threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
