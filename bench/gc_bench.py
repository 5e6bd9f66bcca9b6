"""Garbage collection at scale: 100,000 blobs and 20,000 manifests, generated straight into
filesystem storage and SQLite, then collected by Wharf (and, on the same data in its own
layout, by the reference registry's ``garbage-collect``).

    .venv/bin/python bench/gc_bench.py [--blobs 100000] [--manifests 20000] [--reference]

The shape: manifests spread over ``--repos`` repositories, each an OCI image manifest with
its own config and ``--layers`` layers drawn from a shared pool; 80 % tagged, 20 %
untagged; 10 % of the layer pool referenced by nothing. Everything is two days old. Wharf
runs with ``--delete-untagged`` (and a dry run first); the reference registry runs
``garbage-collect --delete-untagged`` on a copy of the same blobs (hard links) in its
layout (``docker/registry/v2/...``), since it reads manifests from storage.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.gc.collector import Collector, GCOptions
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from storage.filesystem import FilesystemDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REFERENCE = "/usr/bin/docker-registry"


OLD = time.time() - 2 * 86400  # everything was written two days ago


def _write(root: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    directory = root / "blobs" / "sha256" / hexdigest[:2] / hexdigest
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").write_bytes(data)
    os.utime(directory / "data", (OLD, OLD))
    return f"sha256:{hexdigest}"


class Shape:
    """The generated registry: what every row and file is."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(42)
        self.repos = [f"bench/repo{i:04d}" for i in range(args.repos)]
        pool_size = args.blobs - args.manifests  # one config per manifest, the rest layers
        self.layers = [
            f"layer {i} ".encode() + rng.randbytes(rng.randint(32, 480)) for i in range(pool_size)
        ]
        used_pool = int(pool_size * 0.9)  # the last 10 % are referenced by nothing
        self.images: list[tuple[str, str | None, bytes, list[int]]] = []
        for i in range(args.manifests):
            repo = self.repos[i % len(self.repos)]
            config = json.dumps({"architecture": "amd64", "os": "linux", "image": i}).encode()
            # its own share of the used pool (each used layer referenced at least once)
            # and one layer shared with other images
            picks = list(range(i, used_pool, args.manifests))[: args.layers - 1]
            picks.append(rng.randrange(used_pool))
            tag = f"v{i}" if rng.random() < 0.8 else None
            self.images.append((repo, tag, config, picks))
        self.unused = list(range(used_pool, pool_size))


def generate(shape: Shape, root: Path) -> dict[str, int]:
    """Files under ``root`` and rows in ``root/wharf.db``; returns counts."""
    asyncio.run(ensure_schema(f"sqlite+aiosqlite:///{root / 'wharf.db'}"))
    created = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    layer_digests = [_write(root, data) for data in shape.layers]
    db = sqlite3.connect(root / "wharf.db")
    db.executemany(
        "INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)",
        [(i + 1, name, created) for i, name in enumerate(shape.repos)],
    )
    repo_id = {name: i + 1 for i, name in enumerate(shape.repos)}
    blob_rows: dict[str, int] = {
        d: len(data) for d, data in zip(layer_digests, shape.layers, strict=True)
    }
    links: set[tuple[int, str]] = set()
    manifests, manifest_blobs, tags = [], [], []
    for n, (repo, tag, config, picks) in enumerate(shape.images, start=1):
        config_digest = _write(root, config)
        blob_rows[config_digest] = len(config)
        layers = [layer_digests[p] for p in picks]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": d, "size": blob_rows[d]} for d in layers
                ],
            }
        ).encode()
        digest = _write(root, body)
        rid = repo_id[repo]
        manifests.append((n, rid, digest, OCI_MANIFEST, None, len(body), None, None, created))
        for d in dict.fromkeys([config_digest, *layers]):
            manifest_blobs.append((n, d))
            links.add((rid, d))
        if tag is not None:
            tags.append((rid, tag, n, created))
    for i, p in enumerate(shape.unused):
        links.add((repo_id[shape.repos[i % len(shape.repos)]], layer_digests[p]))
    db.executemany(
        "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
        [(d, s, created) for d, s in blob_rows.items()],
    )
    db.executemany(
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)",
        [(r, d, created) for r, d in sorted(links)],
    )
    db.executemany("INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", manifests)
    db.executemany("INSERT INTO manifest_blobs (manifest_id, digest) VALUES (?, ?)", manifest_blobs)
    db.executemany(
        "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (?, ?, ?, ?)",
        tags,
    )
    db.commit()
    db.close()
    return {"blobs": len(blob_rows), "manifests": len(manifests), "links": len(links)}


def reference_layout(wharf_root: Path, ref_root: Path) -> None:
    """The same content in the reference registry's layout (blobs hard-linked)."""
    v2 = ref_root / "docker" / "registry" / "v2"
    shutil.copytree(wharf_root / "blobs", v2 / "blobs", copy_function=os.link)
    db = sqlite3.connect(wharf_root / "wharf.db")
    names = dict(db.execute("SELECT id, name FROM repositories"))

    def link(path: Path, digest: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "link").write_text(digest)

    for rid, digest in db.execute("SELECT repository_id, digest FROM repository_blobs"):
        hexpart = digest.split(":", 1)[1]
        link(v2 / "repositories" / names[rid] / "_layers" / "sha256" / hexpart, digest)
    for rid, digest in db.execute("SELECT repository_id, digest FROM manifests"):
        hexpart = digest.split(":", 1)[1]
        repo = v2 / "repositories" / names[rid] / "_manifests"
        link(repo / "revisions" / "sha256" / hexpart, digest)
    for rid, tag, digest in db.execute(
        "SELECT t.repository_id, t.name, m.digest FROM tags t"
        " JOIN manifests m ON m.id = t.manifest_id"
    ):
        hexpart = digest.split(":", 1)[1]
        tag_dir = v2 / "repositories" / names[rid] / "_manifests" / "tags" / tag
        link(tag_dir / "current", digest)
        link(tag_dir / "index" / "sha256" / hexpart, digest)
    db.close()


def run_reference(ref_root: Path) -> float | None:
    if not Path(REFERENCE).exists():
        print("reference registry not installed (apt-get install docker-registry)")
        return None
    config = ref_root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\nstorage:\n"
        f"  filesystem: {{rootdirectory: {ref_root}}}\n  delete: {{enabled: true}}\n"
        "http: {addr: 127.0.0.1:0}\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [REFERENCE, "garbage-collect", "--delete-untagged", str(config)],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        print(f"reference garbage-collect failed ({out.returncode}): {out.stderr[-2000:]}")
        return None
    lines = out.stdout.splitlines()
    deleting = sum(1 for line in lines if "blob eligible for deletion" in line)
    print(f"reference garbage-collect: {elapsed:.1f} s, {deleting} blobs eligible for deletion")
    return elapsed


def _files(root: Path) -> int:
    return sum(1 for _ in (root / "blobs").rglob("data"))


async def collect(root: Path, dry: bool) -> dict[str, float | int]:
    db = Database(f"sqlite+aiosqlite:///{root / 'wharf.db'}", 2)
    try:
        collector = Collector(db, FilesystemDriver(root))
        options = GCOptions(dry_run=dry, delete_untagged=True, grace=3600.0, upload_age=None)
        result = await collector.run(options, "bench")
    finally:
        await db.close()
    return {
        k: v for k, v in result.summary().items() if isinstance(v, int | float) and k != "dry_run"
    }


async def s3_deletes(count: int, work: Path) -> None:
    """Orphans on S3 (radosgw, started here): ``count`` objects under ``blobs/`` that no
    row names; a dry run (the listing) and a run that deletes them (batched
    ``DeleteObjects``)."""
    from storage.s3 import S3Driver
    from tests.support.s3 import RadosGateway, missing_binaries, s3_options

    if missing_binaries():
        print(f"S3: radosgw not installed ({', '.join(missing_binaries())})")
        return
    gateway = RadosGateway().start()
    try:
        gateway.create_bucket("wharf")
        driver = S3Driver(s3_options(gateway, "gcbench"))
        semaphore = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            data = f"s3 orphan {i}".encode()
            hexdigest = hashlib.sha256(data).hexdigest()
            async with semaphore:
                await driver.put_content(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", data)

        started = time.perf_counter()
        await asyncio.gather(*(put(i) for i in range(count)))
        print(f"S3: put {count} objects in {time.perf_counter() - started:.1f} s")
        url = f"sqlite+aiosqlite:///{work / 's3.db'}"
        await ensure_schema(url)
        db = Database(url, 2)
        try:
            for dry in (True, False):
                collector = Collector(db, driver)
                options = GCOptions(dry_run=dry, grace=0.0, upload_age=None)
                result = await collector.run(options, "bench")
                files = result.orphan_files_deleted
                rate = files / result.sweep_seconds if result.sweep_seconds else 0.0
                print(
                    f"S3 wharf gc{' --dry-run' if dry else ''}: sweep {result.sweep_seconds:.2f} s"
                    f" for {files} orphan objects ({rate:.0f}/s"
                    f"{', listing only' if dry else ', listing and DeleteObjects'})"
                )
        finally:
            await db.close()
        driver.close()
    finally:
        gateway.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blobs", type=int, default=100_000)
    p.add_argument("--manifests", type=int, default=20_000)
    p.add_argument("--repos", type=int, default=200)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--reference", action="store_true", help="also run the reference registry")
    p.add_argument("--workdir", help="where to generate (default: a temporary directory)")
    p.add_argument("--s3", type=int, default=0, help="also: N orphan objects on radosgw")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wharf-gc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "wharf"
    started = time.perf_counter()
    shape = Shape(args)
    counts = generate(shape, root)
    print(
        f"generated {counts['blobs']} blobs, {counts['manifests']} manifests, "
        f"{counts['links']} links, {_files(root)} files in {time.perf_counter() - started:.1f} s"
    )
    if args.reference:
        reference_layout(root, work / "reference")
    for dry in (True, False):
        result = asyncio.run(collect(root, dry))
        deleted = (
            result["manifests_deleted"] + result["blobs_deleted"] + result["orphan_files_deleted"]
        )
        rate = deleted / result["sweep_seconds"] if result["sweep_seconds"] and not dry else 0
        print(
            f"wharf gc{' --dry-run' if dry else ''}: mark {result['mark_seconds']:.2f} s, "
            f"sweep {result['sweep_seconds']:.2f} s, total {result['duration_seconds']:.2f} s; "
            f"{result['manifests_deleted']} manifests, {result['blobs_deleted']} blobs, "
            f"{result['links_deleted']} links, {result['orphan_files_deleted']} orphan files, "
            f"{result['bytes_reclaimed']} bytes" + (f" ({rate:.0f} deletions/s)" if rate else "")
        )
    print(f"files left: {_files(root)}")
    if args.reference:
        run_reference(work / "reference")
    if args.s3:
        asyncio.run(s3_deletes(args.s3, work))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
