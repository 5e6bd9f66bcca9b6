"""``wharf replicate RULE -c config.yml``: run one rule now, with progress on stderr.
``wharf mirror evict [--dry-run] [--json] -c config.yml``: evict what the pull-through
mirrors cached and nobody pulled for their ``maxage`` (or beyond their ``maxbytes``) now,
with or without a running registry (issue #16); the next GC reclaims the bytes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit
from registry.config import ConfigError, load_settings
from registry.meta.db import Database
from registry.meta.migrate import SchemaOutOfDate, ensure_schema
from replicator.copy import Counters
from replicator.rules import local_remote
from replicator.ruleset import RuleSet
from replicator.runner import RuleRunner
from replicator.store import ReplicationStore


class Progress:
    """One status line on stderr, rewritten at most 10 times a second (on a terminal)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self._last = 0.0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def line(self, c: Counters) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        mib = c.bytes / 1048576
        return (
            f"tags {c.tags_copied} copied, {c.tags_skipped} in step | blobs {c.blobs_copied} "
            f"copied, {c.blobs_mounted} mounted, {c.blobs_skipped} present | "
            f"{mib:.1f} MiB, {mib / elapsed:.1f} MiB/s"
        )

    def __call__(self, c: Counters) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r" + self.line(c)[:200] + "\033[K")
        self.stream.flush()

    def done(self, status: str, c: Counters) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{status}: {self.line(c)}\n")
        for error in c.errors:
            self.stream.write(f"  error: {error}\n")
        self.stream.flush()


async def _replicate(config: str | None, rule_name: str, record: bool) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2
    rule = next((r for r in settings.replication.rules if r.name == rule_name), None)
    progress = Progress()
    db: Database | None = None
    store = None
    if record or rule is None:  # rules added through the API are in the database
        try:
            await ensure_schema(settings.database_url)
        except SchemaOutOfDate as e:
            print(f"wharf: {e}", file=sys.stderr)
            return 2
        db = Database(settings.database_url, 2)
        store = ReplicationStore(db)
    try:
        if rule is None:
            assert store is not None
            rules = await RuleSet(settings.replication.rules, store).current()
            rule = rules.get(rule_name)
            if rule is None:
                known = ", ".join(rules) or "none"
                print(f"wharf: no replication rule {rule_name!r} (rules: {known})", file=sys.stderr)
                return 2
        runner = RuleRunner(rule, local_remote(settings), store if record else None, progress)
        status, counters = await runner.run("manual")
    finally:
        if db is not None:
            await db.close()
    progress.done(status, counters)
    return 0 if status == "ok" else 1


def _command(args: argparse.Namespace) -> int:
    return asyncio.run(_replicate(args.config, args.rule, not args.no_record))


async def _evict(config: str | None, dry_run: bool, as_json: bool) -> int:
    from replicator.mirror_evict import Evictor, policies

    settings = settings_or_exit(config)
    try:
        await ensure_schema(settings.database_url)
    except SchemaOutOfDate as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2
    db = Database(settings.database_url, 1)
    try:
        result = await Evictor(db, policies(settings)).run(dry_run)
    finally:
        await db.close()
    summary = result.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    verb = "would evict" if dry_run else "evicted"
    print(
        f"{verb} {summary['evicted']} of {summary['cached']} cached manifests "
        f"({summary['evicted_by_age']} by age, {summary['evicted_by_bytes']} by bytes), "
        f"{summary['bytes']} bytes"
    )
    for m in summary["manifests"]:
        print(f"  {m['repository']}@{m['digest']} ({m['reason']})")
    return 0


def _evict_command(args: argparse.Namespace) -> int:
    return asyncio.run(_evict(args.config, args.dry_run, args.json))


def add_commands(sub: Any) -> None:
    """Add ``replicate`` and ``mirror evict`` to the ``wharf`` command."""

    p = sub.add_parser("replicate", help="run a replication rule now (progress on stderr)")
    p.add_argument("rule", help="the rule's name (in the config, or added through the API)")
    add_config_arguments(p, positional=False)  # the positional argument is the rule
    p.add_argument("--no-record", action="store_true", help="do not record the run in the database")
    p.set_defaults(func=_command)

    mirror = sub.add_parser("mirror", help="the pull-through mirror's cache")
    mirror_sub = mirror.add_subparsers(dest="mirror_command", required=True)
    evict = mirror_sub.add_parser(
        "evict", help="evict cached content nobody pulled for maxage (or beyond maxbytes)"
    )
    add_config_arguments(evict)
    evict.add_argument("--dry-run", action="store_true", help="report, evict nothing")
    evict.add_argument("--json", action="store_true", help="the result as JSON")
    evict.set_defaults(func=_evict_command)
