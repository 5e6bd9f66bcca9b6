"""``wharf immutable add PROJECT --repository PAT --tag PAT``, ``wharf immutable list
PROJECT``, ``wharf immutable remove PROJECT ID``: a project's immutability rules in the
configured database (``-c config.yml``), with or without a running registry (a running
registry reads the rules in every push's transaction: a rule holds from the next push).

Exit status: 0 done, 1 no such project or rule, or the rule exists; 2 bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from registry.commandline import add_config_arguments, settings_or_exit


def _line(rule: Any) -> str:
    return (
        f"{rule.id}  repository {rule.repository}  tag {rule.tag}  "
        f"created {rule.created_at.isoformat(timespec='seconds')} by {rule.created_by or '-'}"
    )


async def _run(args: argparse.Namespace) -> int:
    from registry.errors import RegistryError
    from registry.immutability.rules import RuleProblems, check_rule
    from registry.immutability.service import ImmutabilityService
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema

    if args.immutable_command == "add":
        try:
            repository, tag = check_rule({"repository": args.repository, "tag": args.tag})
        except RuleProblems as e:
            print(f"wharf immutable: {e}", file=sys.stderr)
            return 2
    settings = settings_or_exit(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    service = ImmutabilityService(db)
    who = f"cli:{getpass.getuser()}"
    try:
        if args.immutable_command == "add":
            made = await service.add(args.project, repository, tag, who)
            print(f"added rule {_line(made)}")
        elif args.immutable_command == "remove":
            gone = await service.remove(args.project, args.id, who)
            print(f"removed rule {_line(gone)}")
        else:
            rules = await service.rules(args.project)
            if args.json:
                out = {"project": args.project, "rules": [r.as_json() for r in rules]}
                print(json.dumps(out, indent=2))
            else:
                for rule in rules:
                    print(_line(rule))
    except RegistryError as e:
        print(f"wharf immutable: {e.message}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    return 0


def _immutable(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def add_commands(sub: Any) -> None:
    """Add ``wharf immutable add|list|remove`` to the command line."""
    top = sub.add_parser("immutable", help="immutable tag rules per project")
    top_sub = top.add_subparsers(dest="immutable_command", required=True)
    add = top_sub.add_parser("add", help="add a rule: matching tags may not move or go")
    add.add_argument("project")
    add.add_argument(
        "--repository", required=True, metavar="PAT", help="repository glob (team/**, team/app)"
    )
    add.add_argument("--tag", required=True, metavar="PAT", help="tag glob (release-*, v*)")
    list_ = top_sub.add_parser("list", help="a project's rules")
    list_.add_argument("project")
    list_.add_argument("--json", action="store_true", help="print JSON (as the API gives)")
    remove = top_sub.add_parser("remove", help="remove a rule by its id")
    remove.add_argument("project")
    remove.add_argument("id", type=int)
    for p in (add, list_, remove):
        add_config_arguments(p, positional=False)
        p.set_defaults(func=_immutable)
