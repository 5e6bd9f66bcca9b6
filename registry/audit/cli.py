"""``wharf audit export [--format jsonl|csv] [--project P] [--user U] [--action A]
[--repository R] [--outcome O] [--since T] [--until T]``: the audit records of the
configured database (``-c config.yml``), newest first, on standard output, as
``/api/audit/export`` gives them (with or without a running registry).

Exit status: 0 done, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit

FILTERS = ("project", "user", "action", "repository", "outcome", "since", "until")


async def _export(args: argparse.Namespace) -> int:
    from registry.audit import store
    from registry.audit.api import EXPORT_PAGE, csv_line, shown
    from registry.audit.errors import AuditQueryInvalid
    from registry.audit.query import parse_query
    from registry.audit.records import COLUMNS
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema

    params = {k: getattr(args, k) for k in FILTERS if getattr(args, k) is not None}
    try:
        query = parse_query(params)
    except AuditQueryInvalid as e:
        for key, problem in (e.detail or {}).items():
            print(f"wharf audit export: --{key}: {problem}", file=sys.stderr)
        return 2
    settings = settings_or_exit(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    out = sys.stdout
    try:
        if args.format == "csv":
            out.write(",".join(COLUMNS) + "\n")
        cursor = None
        while True:
            rows = await db.run_read(store.page, query.filters, cursor, EXPORT_PAGE)
            for row in rows:
                record = shown(row)
                line = csv_line(record) if args.format == "csv" else json.dumps(record) + "\n"
                out.write(line)
            if len(rows) < EXPORT_PAGE:
                break
            cursor = (float(rows[-1]["time"]), int(rows[-1]["id"]))
    finally:
        await db.close()
    out.flush()
    return 0


def _audit(args: argparse.Namespace) -> int:
    return asyncio.run(_export(args))


def add_commands(sub: Any) -> None:
    """Add ``wharf audit export`` to the command line."""
    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="print audit records (newest first)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    for key in FILTERS:
        export.add_argument(f"--{key}", help=f"only records of this {key}")
    add_config_arguments(export, positional=False)
    export.set_defaults(func=_audit)
