"""``wharf gc``: run garbage collection against the configured database and storage,
while the registry serves."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from registry.commandline import add_config_arguments, settings_or_exit
from registry.durations import parse_duration

if TYPE_CHECKING:
    from collections.abc import Callable

    from registry.config import Settings
    from registry.gc.store_doom import Removed
    from registry.gc.store_mark import KeepRoots
    from registry.meta.trail import TrailFor

    # what a run tells of what it deletes: a feature's callbacks, made from the settings
    RemovedFor: TypeAlias = Callable[[Settings], Sequence[Removed]] | None


class _Bar:
    """A one-line progress display on stderr (a plain line per phase when not a TTY)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.phase = ""
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self.phase:
            if self.tty and self.phase:
                self.out.write("\n")
            self.phase = phase
            self.last = 0.0
            if not self.tty:
                self.out.write(f"gc: {phase}\n")
                self.out.flush()
        if not self.tty or now - self.last < 0.1:
            return
        self.last = now
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            bar = "#" * filled + "-" * (width - filled)
            self.out.write(f"\r{phase:<15} [{bar}] {done}/{total}")
        else:
            self.out.write(f"\r{phase:<15} {done}")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.phase:
            self.out.write("\n")
            self.out.flush()


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


async def _run(
    args: argparse.Namespace, roots: Sequence[KeepRoots] = (), removed: RemovedFor = None
) -> int:
    from registry.drivers import make_driver
    from registry.gc.collector import Collector, GCBusy
    from registry.gc.runner import options_from
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema
    from registry.meta.trail import command_trail

    settings = settings_or_exit(args.config)
    options = options_from(
        settings,
        dry_run=args.dry_run,
        delete_untagged=args.delete_untagged or None,
        grace=args.grace,
        untagged_age=args.untagged_age,
        walk=False if args.no_walk else None,
        batch=args.batch,
    )
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 2, False)
    bar = _Bar(sys.stderr) if not args.quiet else None
    try:
        told = removed(settings) if removed is not None else ()
        collector = Collector(
            db,
            make_driver(settings),
            progress=bar,
            roots=roots,
            removed=told,
            trail=command_trail(args, settings),
        )
        deadline = time.monotonic() + args.wait
        while True:
            try:
                await collector.start(options, "cli")
                break
            except GCBusy as e:
                if time.monotonic() >= deadline:
                    print(f"wharf gc: {e}", file=sys.stderr)
                    return 3
                await asyncio.sleep(0.2)
        result = await collector.execute(options)
    finally:
        if bar is not None:
            bar.close()
        await db.close()
    summary: dict[str, Any] = result.summary()
    summary["run_id"] = collector.run_id
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    verb = "would delete" if options.dry_run else "deleted"
    print(
        f"gc run {collector.run_id}{' (dry run)' if options.dry_run else ''}: {verb} "
        f"{result.manifests_deleted} manifests, {result.blobs_deleted} blobs, "
        f"{result.links_deleted} links, {result.orphan_files_deleted} orphan files, "
        f"{result.uploads_purged} uploads; "
        f"{'reclaimable' if options.dry_run else 'reclaimed'} {result.bytes_reclaimed} bytes "
        f"in {result.duration_seconds:.2f}s (mark {result.mark_seconds:.2f}s, "
        f"sweep {result.sweep_seconds:.2f}s)"
    )
    return 0


def _gc(
    args: argparse.Namespace, roots: Sequence[KeepRoots] = (), removed: RemovedFor = None
) -> int:
    return asyncio.run(_run(args, roots, removed))


def add_commands(
    sub: Any,
    roots: Sequence[KeepRoots] = (),
    removed: RemovedFor = None,
    trail: TrailFor | None = None,
) -> None:
    """Add ``wharf gc`` to the command line; its runs keep ``roots`` (what features keep
    though no tag reaches it), as the registry's do, and tell what they delete to the
    callbacks ``removed`` makes from the settings; ``trail``: the audit log's, per
    settings (a run's start recorded)."""

    gc = sub.add_parser(
        "gc", help="garbage collection: delete what no tag reaches (safe while serving)"
    )
    add_config_arguments(gc)
    gc.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    gc.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests no tag reaches"
    )
    gc.add_argument(
        "--untagged-age",
        type=_duration,
        default=None,
        help="with --delete-untagged: only those older than this (e.g. 72h)",
    )
    gc.add_argument(
        "--grace",
        type=_duration,
        default=None,
        help="keep anything pushed, linked or looked at more recently (default gc.grace, 1h)",
    )
    gc.add_argument("--no-walk", action="store_true", help="skip the orphan file scan")
    gc.add_argument(
        "--wait",
        type=_duration,
        default=0.0,
        help="wait this long for a running collection to end (else exit 3 at once)",
    )
    gc.add_argument(
        "--batch", type=_positive, default=None, help="deletions decided per transaction (500)"
    )
    gc.add_argument("--json", action="store_true", help="print the result as JSON")
    gc.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    gc.set_defaults(
        func=functools.partial(_gc, roots=tuple(roots), removed=removed), trail_for=trail
    )
