"""``wharf search reindex``: fill the search index for content pushed before it existed.

The 0005 migration already gave every tag a row (name, tag, digest, type and push time
searches work at once); this adds what needs the stored bytes: labels, platforms,
annotations and the image page's facts, reading each manifest and its config blob once.
Safe to run again (only manifests without facts are read) and while the registry serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit
from registry.content.manifests import parse_manifest
from registry.errors import ManifestInvalid
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.search import store_index
from registry.search.facts import details_for
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest

log = logging.getLogger("wharf.search")
BATCH = 200


async def reindex(database_url: str, blobs: BlobStore) -> tuple[int, int]:
    """Backfill tag rows and manifest facts; returns (tags added, manifests read)."""
    await ensure_schema(database_url)
    db = Database(database_url)
    try:
        added = await db.run_write(store_index.backfill_tags)
        read = 0
        while batch := await db.run_read(store_index.unindexed_manifests, BATCH):
            for item in batch:
                details: dict[str, Any] = {}
                try:
                    body = await blobs.get(Digest.parse(item.digest))
                    parsed = parse_manifest(body, item.media_type)
                    details = dict(await details_for(blobs, parsed))
                except (BlobNotFound, ManifestInvalid) as e:
                    log.warning("%s@%s: not indexed: %s", item.repository, item.digest, e)
                await db.run_write(store_index.write_facts, item.repository, item.digest, details)
                read += 1
        return added, read
    finally:
        await db.close()


def _run(args: argparse.Namespace) -> int:
    from registry.drivers import make_driver

    settings = settings_or_exit(args.config)
    blobs = BlobStore(make_driver(settings))
    added, read = asyncio.run(reindex(settings.database_url, blobs))
    print(f"search index: {added} tags added, {read} manifests indexed")
    return 0


def add_commands(sub: Any) -> None:
    """``wharf search reindex``."""

    search = sub.add_parser("search", help="the search index")
    search_sub = search.add_subparsers(dest="search_command", required=True)
    reindex_cmd = search_sub.add_parser(
        "reindex", help="index manifests pushed before the search index existed"
    )
    add_config_arguments(reindex_cmd)
    reindex_cmd.set_defaults(func=_run)
