"""PostgreSQL metadata: migrations, the schema check, racing writers, a restarted server."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from registry.meta import db as dbmod
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema, head_revision
from registry.meta.records import NewManifest
from registry.meta.store import MetadataStore
from registry.meta.tables import blobs, metadata
from tests.support.oci import digest_of, push_blob, push_image, unique_name
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer


def all_tables() -> list[str]:
    """Every table the code defines (each feature's module adds its own)."""
    for module in (
        "registry.accounts.tables",
        "registry.events.tables",
        "registry.gc.tables",
        "registry.projects.tables",
        "registry.quotas.tables",
        "registry.search.tables",
        "registry.ui.tables",
        "replicator.tables",
    ):
        importlib.import_module(module)
    return list(metadata.tables)


def wharf_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_db_upgrade_and_out_of_date_schema(postgres: PostgresCluster, tmp_path: Path) -> None:
    database = "cli_upgrade"
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "database": {"url": postgres.create_database(database), "poolsize": 2},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                "http": {"addr": "127.0.0.1:1", "workers": 1},
            }
        )
    )
    current = wharf_cli("db", "current", "-c", str(cfg))
    assert current.returncode == 1 and "none" in current.stdout, current.stderr
    up = wharf_cli("db", "upgrade", "-c", str(cfg))
    assert up.returncode == 0, up.stderr
    current = wharf_cli("db", "current", "-c", str(cfg))
    assert current.returncode == 0 and head_revision() in current.stdout

    tables = postgres.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
        " WHERE schemaname = 'public'",
        database,
    )
    # the migrations create exactly the tables the code defines, on PostgreSQL too
    assert tables.split(",") == ["alembic_version", *sorted(all_tables())]
    collations = postgres.psql(
        "SELECT string_agg(table_name || '.' || collation_name, ',' ORDER BY table_name)"
        " FROM information_schema.columns WHERE column_name = 'name'"
        " AND table_schema = 'public'",
        database,
    )
    assert collations == "projects.C,replication_rules.C,repositories.C,robots.C,tags.C,users.C"

    postgres.psql("UPDATE alembic_version SET version_num = '0000'", database)
    out = wharf_cli("serve", str(cfg))
    assert out.returncode == 2
    assert "wharf db upgrade" in out.stderr and "0000" in out.stderr


async def test_a_write_that_lost_a_race_runs_again(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await ensure_schema(url)
    db = Database(url, poolsize=2)
    row = {"digest": "sha256:" + "0" * 64, "size": 1, "created_at": datetime.now(UTC)}
    calls: list[int] = []

    def insert_once(conn: Connection) -> int:
        calls.append(1)
        conn.execute(insert(blobs), row)  # a plain INSERT: the second one collides
        return len(calls)

    def always_collides(conn: Connection) -> None:
        calls.append(1)
        conn.execute(insert(blobs), row)

    try:
        assert await db.run_write(insert_once) == 1
        calls.clear()
        with pytest.raises(IntegrityError):
            await db.run_write(always_collides)
        assert len(calls) == dbmod.PG_ATTEMPTS  # run again, then given up

        calls.clear()

        def collides_first(conn: Connection) -> int:
            calls.append(1)
            if len(calls) == 1:
                conn.execute(insert(blobs), row)
            return len(calls)

        assert await db.run_write(collides_first) == 2

        calls.clear()

        def fails(conn: Connection) -> None:
            calls.append(1)
            raise ValueError("not a race")

        with pytest.raises(ValueError):
            await db.run_write(fails)
        assert len(calls) == 1
    finally:
        await db.close()


async def test_racing_pushes_and_deletes_in_one_process(postgres: PostgresCluster) -> None:
    """Many transactions at once on one manifest: each ends well, the rows stay consistent."""
    url = postgres.create_database()
    await ensure_schema(url)
    db = Database(url, poolsize=20)
    store = MetadataStore(db)
    name, layer = "race/app", "sha256:" + "1" * 64
    try:
        await store.link_blob(name, layer, 10)
        new = NewManifest(
            "sha256:" + "2" * 64, "application/vnd.oci.image.manifest.v1+json", 100,
            None, None, None, ((layer, 10),), (),
        )  # fmt: skip
        jobs: list[Any] = []
        for i in range(30):
            jobs.append(store.put_manifest(name, new, f"t{i % 3}"))
            jobs.append(store.delete_manifest(name, new.digest))
            jobs.append(store.link_blob(f"race/other{i % 4}", layer, 10))
        await asyncio.gather(*jobs)
        await store.put_manifest(name, new, "final")
        assert await store.list_tags(name, None, None) is not None
        resolved = await store.resolve(name, tag="final")
        assert resolved is not None and resolved.digest == new.digest
        counts = await store.counts()
        assert counts == {"repositories": 5, "manifests": 1, "blobs": 1}
    finally:
        await db.close()


@pytest.mark.expect_5xx(503)  # PostgreSQL is down for a while: 503 UNAVAILABLE meanwhile
def test_nodes_recover_when_postgres_restarts(
    make_wharf: Callable[..., WharfServer], postgres: PostgresCluster
) -> None:
    server = make_wharf({"http": {"workers": 1}, "database": {"url": postgres.create_database()}})
    name = unique_name("restart")
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with server.client() as c:
            n = 0
            while not stop.is_set() and n < 2000:
                n += 1
                r = c.post(
                    f"/v2/{name}/blobs/uploads/",
                    params={"digest": digest_of(f"blob {n}".encode())},
                    content=f"blob {n}".encode(),
                )
                codes.append(r.status_code)
                if r.status_code == 503:
                    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"

    worker = threading.Thread(target=load)
    with server.client() as c:
        push_image(c, name, "before", [b"pushed before the restart"])
        worker.start()
        time.sleep(0.3)
        postgres.restart()
        time.sleep(0.3)
        stop.set()
        worker.join(60)
        # The node was not restarted: it reconnects by itself.
        assert c.get(f"/v2/{name}/manifests/before").status_code == 200
        push_image(c, name, "after", [b"pushed after the restart"])
        assert c.get("/healthz").status_code == 200
    assert codes and set(codes) <= {201, 503}, sorted(set(codes))
    assert codes[-1] == 201


def test_poolsize_bounds_connections(
    make_wharf: Callable[..., WharfServer], postgres: PostgresCluster
) -> None:
    database = "poolsize"
    url = postgres.create_database(database)
    server = make_wharf({"http": {"workers": 1}, "database": {"url": url, "poolsize": 2}})
    name = unique_name("pool")

    def push(i: int) -> int:
        with server.client() as c:
            return c.post(
                f"/v2/{name}/blobs/uploads/",
                params={"digest": digest_of(f"pool {i}".encode())},
                content=f"pool {i}".encode(),
            ).status_code

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(push, range(16)))
    assert results == [201] * 16
    connections = int(
        postgres.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'", database
        )
    )
    assert connections <= 2 + 1  # the pool, and this psql session
    with server.client() as c:
        push_blob(c, name, b"still fine")
