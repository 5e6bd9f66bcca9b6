"""``wharf quota set PROJECT SIZE|none``, ``wharf quota show [PROJECT]``, ``wharf quota
recount``: the quotas and usage of the configured database (``-c config.yml``), with or
without a running registry (a running registry reads the quota in every push's
transaction: a new quota holds from the next push).

``wharf quota recount`` is what the issue calls ``wharf project usage --recount``: under
``wharf quota`` since ``wharf project`` is the projects feature's command.

Exit status: 0 done, 1 no such project, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit
from registry.meta.trail import TrailFor, command_trail
from registry.sizes import format_size, parse_size


def _size(text: str) -> int | None:
    if text.strip().lower() in ("none", "null", "unlimited"):
        return None
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _line(u: Any) -> str:
    percent = "-" if u.percent is None else f"{u.percent:.1f}%"
    return (
        f"{u.project}  usage {format_size(u.bytes)} ({u.bytes} B)  quota "
        f"{format_size(u.quota)}  {percent}  shared {format_size(u.shared_bytes)}  "
        f"repositories {u.repositories}"
    )


def _as_json(u: Any) -> dict[str, Any]:
    from registry.quotas.api import usage_json

    return usage_json(u)


async def _run(args: argparse.Namespace) -> int:
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema
    from registry.quotas.errors import ProjectUnknown
    from registry.quotas.service import QuotaService

    settings = settings_or_exit(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    service = QuotaService(db, settings.projects.default, command_trail(args, settings))
    try:
        if args.quota_command == "set":
            usage = await service.set_quota(args.project, args.size)
            print(_line(usage))
        elif args.quota_command == "show":
            found = [await service.usage(args.project)] if args.project else await service.all()
            if args.json:
                print(json.dumps({"projects": [_as_json(u) for u in found]}, indent=2))
            else:
                for u in found:
                    print(_line(u))
        else:
            changed = 0
            for project, (before, after) in (await service.recount()).items():
                if before != after:
                    changed += 1
                    print(f"{project}: {before} -> {after} bytes")
            print(f"recounted: {changed} project(s) corrected")
    except ProjectUnknown as e:
        print(f"wharf quota: no project named {args.project!r} ({e.message})", file=sys.stderr)
        return 1
    finally:
        await db.close()
    return 0


def _quota(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def add_commands(sub: Any, trail: TrailFor | None = None) -> None:
    """Add ``wharf quota set|show|recount`` to the command line; ``trail``: the audit
    log's, per settings."""
    quota = sub.add_parser("quota", help="storage quotas and usage per project")
    quota.set_defaults(trail_for=trail)
    quota_sub = quota.add_subparsers(dest="quota_command", required=True)
    set_ = quota_sub.add_parser("set", help="set a project's quota (none: no quota)")
    set_.add_argument("project")
    set_.add_argument(
        "size", type=_size, metavar="SIZE|none", help="bytes, or 10GiB, 500MB...; none removes it"
    )
    show = quota_sub.add_parser("show", help="usage and quota of one project or of all")
    show.add_argument("project", nargs="?")
    show.add_argument("--json", action="store_true", help="print JSON (as the API gives)")
    recount = quota_sub.add_parser(
        "recount", help="recompute every project's usage from the repositories"
    )
    for p in (set_, show, recount):
        add_config_arguments(p, positional=False)
        p.set_defaults(func=_quota)
