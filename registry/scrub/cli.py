"""``wharf scrub``: read every stored blob and manifest back and check it against its
digest, in this process, while the registry serves; bad content is quarantined.

Exit status: 0 all good, 1 bad content found (listed), 3 another scrub is running, 4
stopped before the end (SIGTERM, Ctrl-C: ``--resume`` goes on from there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from registry.commandline import add_config_arguments, settings_or_exit

if TYPE_CHECKING:
    from collections.abc import Callable

    from registry.config import Settings
    from registry.scrub.store_runs import Record

    # the events feature's writer of other features' events, made from the settings
    RecordFor: TypeAlias = Callable[[Settings], Record | None] | None

BAD, BUSY, STOPPED = 1, 3, 4


def _rate(text: str) -> int:
    from registry.config import parse_rate

    try:
        return parse_rate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class _Lines:
    """Progress lines on stderr: one per save (every couple of seconds)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, p: dict[str, Any]) -> None:
        total = f"/{p['total']}" if p.get("total") is not None else ""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.out.write(
            f"scrub run {p['run_id']} {p['state']}: checked {p['checked']}{total} "
            f"({_size(p['checked_bytes'])}), {p['bad']} bad, "
            f"{_size(p['checked_bytes'] / elapsed)}/s this session\n"
        )
        self.out.flush()


async def _run(args: argparse.Namespace, record_for: RecordFor = None) -> int:
    from registry.drivers import make_driver
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema
    from registry.scrub.scrubber import Scrubber, ScrubBusy
    from storage.blobs import BlobStore

    settings = settings_or_exit(args.config)
    rate = args.rate if args.rate is not None else settings.scrub.rate
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 2, False)
    try:
        record = record_for(settings) if record_for is not None else None
        scrubber = Scrubber(
            db,
            BlobStore(make_driver(settings)),
            rate,
            record=record,
            progress=None if args.quiet else _Lines(sys.stderr),
        )
        try:
            await scrubber.start("cli", resume=args.resume)
        except ScrubBusy as e:
            print(f"wharf scrub: {e}", file=sys.stderr)
            return BUSY
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, scrubber.stop)
        try:
            result = await scrubber.execute()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
    finally:
        await db.close()
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        for f in result.found:
            where = ", ".join(f.repositories) or "no repository"
            print(f"{f.reason}: {f.kind} {f.digest} ({f.detail}) in {where}: quarantined")
        for digest in result.released:
            print(f"good again: {digest}: out of quarantine")
        print(
            f"scrub run {result.run_id} {result.state}: checked {result.checked}"
            f"{'/' + str(result.total) if result.total is not None else ''} objects "
            f"({_size(result.checked_bytes)}), {result.bad} bad, in {result.seconds:.1f}s"
            + (f"; {result.error}" if result.error else "")
        )
    if result.state == "failed":
        return 2
    if result.found:
        return BAD
    return STOPPED if result.state == "stopped" else 0


def _scrub(args: argparse.Namespace, record_for: RecordFor = None) -> int:
    return asyncio.run(_run(args, record_for))


def add_commands(sub: Any, record_for: RecordFor = None) -> None:
    """Add ``wharf scrub``; ``record_for`` makes the events feature's writer of the
    ``scrub_bad`` events from the settings (None: no events)."""
    scrub = sub.add_parser(
        "scrub",
        help="read stored blobs and manifests back, check their digests, quarantine bad ones",
    )
    add_config_arguments(scrub)
    scrub.add_argument(
        "--rate", type=_rate, default=None, help="read at most this fast (50MiB; 0: no limit)"
    )
    scrub.add_argument(
        "--resume",
        action="store_true",
        help="go on where the last run stopped or was interrupted (else start over)",
    )
    scrub.add_argument("--json", action="store_true", help="print the result as JSON")
    scrub.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    scrub.set_defaults(func=functools.partial(_scrub, record_for=record_for))
