"""``wharf retention run PROJECT [--dry-run] [--gc] [--json]`` and ``wharf retention show
PROJECT [--json]`` on the configured registry (``-c config.yml``).

A run deletes through the same services (and change hooks: events, search, quotas, the
audit log) as the registry's API: ``registry/cli.py`` hands in ``open_retention``, which
starts the registry's features in this process without serving. It waits for the run to
end and prints its summary (and, for a dry run, what would go).

Exit status: 0 done, 1 no such project, a run going on, or a failed run; 2 bad arguments
or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit
from registry.config import Settings

Opener = Callable[[Settings], AbstractAsyncContextManager[Any]]  # -> a Retention


def _print_run(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(found, indent=2))
        return
    summary = found.get("summary") or {}
    verb = "would remove" if found["dry_run"] else "removed"
    print(
        f"run {found['id']} of {found['project']}: {found['status']}; {verb} "
        f"{summary.get('tags_removed', 0)} tag(s), {summary.get('manifests_removed', 0)} "
        f"manifest(s), freeing {summary.get('bytes_predicted', 0)} bytes"
    )
    for item in found.get("candidates") or []:
        tags = ", ".join(item["tags"]) or "-"
        print(f"  {item['repository']}: tags {tags}; manifests {len(item['manifests'])}")
        for digest in item["manifests"]:
            print(f"    {digest}")
    for error in summary.get("errors", []):
        print(f"  error: {error}", file=sys.stderr)


async def _run(args: argparse.Namespace, opener: Opener) -> int:
    from registry.errors import RegistryError

    settings = settings_or_exit(args.config)
    async with opener(settings) as retention:
        try:
            if args.retention_command == "run":
                run_id = await retention.start(
                    args.project, args.dry_run, args.gc, "cli", background=False
                )
                found = await retention.run(args.project, run_id)
                _print_run(found, args.json)
                return 0 if found["status"] == "done" else 1
            rules, policy = await retention.settings(args.project)
            runs = await retention.runs(args.project, 10)
            shown = {
                "project": args.project,
                "rules": [r.as_json() for r in rules],
                "schedule": policy.schedule,
                "gc": policy.gc,
                "runs": runs,
            }
            if args.json:
                print(json.dumps(shown, indent=2))
            else:
                print(f"{args.project}: {len(rules)} rule(s), schedule {policy.schedule or '-'}")
                for rule in shown["rules"]:
                    print(f"  rule {rule['id']}: {json.dumps(rule)}")
                for run in runs:
                    print(f"  run {run['id']} {run['status']} {run['started_at']}")
        except RegistryError as e:
            print(f"wharf retention: {e.message}", file=sys.stderr)
            return 1
    return 0


def add_commands(sub: Any, opener: Opener) -> None:
    """Add ``wharf retention run|show``; ``opener(settings)``: an async context manager
    giving the registry's ``Retention`` (its services and hooks started)."""
    top = sub.add_parser("retention", help="tag retention runs and rules per project")
    top_sub = top.add_subparsers(dest="retention_command", required=True)
    run = top_sub.add_parser("run", help="run a project's retention rules now (and wait)")
    run.add_argument("project")
    run.add_argument("--dry-run", action="store_true", help="only list what would go")
    run.add_argument("--gc", action="store_true", help="start a garbage collection after")
    show = top_sub.add_parser("show", help="a project's rules, schedule and recent runs")
    show.add_argument("project")
    for p in (run, show):
        p.add_argument("--json", action="store_true", help="print JSON (as the API gives)")
        add_config_arguments(p, positional=False)
        p.set_defaults(func=lambda args: asyncio.run(_run(args, opener)))
