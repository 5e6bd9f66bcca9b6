"""Retention deciding over a large project (issue #16): 1,000 repositories x 100 tags
(100,000 tags, each on its own image manifest with a config and a layer blob) in one
project on SQLite, with pull times for a tenth of them, and two rules (keep the 10 most
recently pushed; keep what was pulled within 7 days).

The rows are written straight into a fresh SQLite database (bulk inserts of the core's
tables, pull times through ``registry.retention.store.record_pulls``), not over HTTP.
Then it times :meth:`Retention.plan` (the bulk read, the decision per repository in
memory, the bytes it would free) and a whole dry run (``start(dry_run=True)``: the plan
and its record, with the list of what would go), and prints both. The issue's goal:
under 10 s.

    .venv/bin/python bench/retention_bench.py [--repositories 1000] [--tags 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sqlalchemy import Connection, insert  # noqa: E402

from registry.app import build_services  # noqa: E402
from registry.config import Settings  # noqa: E402
from registry.meta.tables import (  # noqa: E402
    blobs,
    manifest_blobs,
    manifests,
    repositories,
    tags,
)
from registry.projects import store as projects_store  # noqa: E402
from registry.retention import store  # noqa: E402
from registry.retention.rules import Rule  # noqa: E402
from registry.retention.setup import build_retention  # noqa: E402

PROJECT = "bench"
CHUNK = 5000


def fill(conn: Connection, repos: int, per_repo: int) -> None:
    now = datetime.now(UTC)
    projects_store.ensure_project(conn, PROJECT, None, "bench")
    conn.execute(
        insert(repositories),
        [{"id": r + 1, "name": f"{PROJECT}/repo-{r:04d}", "created_at": now} for r in range(repos)],
    )
    blob_rows, manifest_rows, link_rows, tag_rows = [], [], [], []
    mid = 0
    for r in range(repos):
        for t in range(per_repo):
            mid += 1
            config, layer = f"sha256:{mid:063x}c", f"sha256:{mid:063x}l"
            blob_rows += [
                {"digest": config, "size": 500, "created_at": now},
                {"digest": layer, "size": 100_000, "created_at": now},
            ]
            manifest_rows.append(
                {
                    "id": mid,
                    "repository_id": r + 1,
                    "digest": f"sha256:{mid:063x}m",
                    "media_type": "application/vnd.oci.image.manifest.v1+json",
                    "size": 400,
                    "created_at": now,
                }
            )
            link_rows += [
                {"manifest_id": mid, "digest": config},
                {"manifest_id": mid, "digest": layer},
            ]
            pushed = now - timedelta(hours=per_repo - t)
            tag_rows.append(
                {"repository_id": r + 1, "name": f"v{t}", "manifest_id": mid, "updated_at": pushed}
            )
    for table, rows in (
        (blobs, blob_rows),
        (manifests, manifest_rows),
        (manifest_blobs, link_rows),
        (tags, tag_rows),
    ):
        for i in range(0, len(rows), CHUNK):
            conn.execute(insert(table), rows[i : i + CHUNK])
    pulled = {
        (f"{PROJECT}/repo-{r:04d}", f"v{t}"): now - timedelta(days=t % 14)
        for r in range(repos)
        for t in range(0, per_repo, 10)
    }
    store.record_pulls(conn, {}, pulled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument(
        "--workdir", help="keep the database here (filled once, reused by later runs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="retention-bench-") as scratch:
        tmp = args.workdir or scratch
        os.makedirs(tmp, exist_ok=True)
        filled = os.path.exists(os.path.join(tmp, "wharf.db"))
        asyncio.run(bench(args, tmp, filled))


async def bench(args: argparse.Namespace, tmp: str, filled: bool) -> None:
    settings = Settings.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": tmp}, "delete": {"enabled": True}},
            "log": {"level": "warn"},
        }
    )
    async with AsyncExitStack() as stack:
        services = await build_services(settings, stack)
        db = services.meta.db
        started = time.perf_counter()
        total = args.repositories * args.tags
        if not filled:
            await db.run_write(fill, args.repositories, args.tags)
        print(
            f"filled {args.repositories} repositories x {args.tags} tags ({total} tags) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        pid = await db.run_read(store.project_id, PROJECT)
        assert pid is not None
        rules = [Rule("latest_pushed", count=10), Rule("pulled_within", days=7)]
        await db.run_write(store.replace_rules, pid, rules)
        retention = build_retention(services)
        started = time.perf_counter()
        plan = await retention.plan(PROJECT)
        planned = time.perf_counter() - started
        going = sum(len(d.removed_tags) for d in plan.decisions)
        print(
            f"plan: {plan.tags} tags in {plan.repositories} repositories decided in "
            f"{planned:.2f} s: {going} tags and "
            f"{sum(len(d.manifests) for d in plan.decisions)} manifests would go, "
            f"freeing {plan.bytes} bytes"
        )
        started = time.perf_counter()
        run_id = await retention.start(PROJECT, True, False, "bench", background=False)
        dry = time.perf_counter() - started
        found = await retention.run(PROJECT, run_id)
        assert found["status"] == "done", found
        print(f"dry run {run_id} (plan + its record): {dry:.2f} s")
        verdict = "under" if planned < 10 else "OVER"
        print(f"retention deciding over {total} tags: {planned:.2f} s ({verdict} 10 s)")


if __name__ == "__main__":
    main()
