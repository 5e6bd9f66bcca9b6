"""``wharf robot create NAME | list | revoke NAME``: robot accounts, straight in the
database of the configuration (``-c config.yml``), with or without a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from registry.accounts.errors import RobotExists, RobotNameInvalid
from registry.accounts.robots import RobotAccounts
from registry.commandline import add_config_arguments
from registry.config import ConfigError, load_settings
from registry.meta.db import Database
from registry.meta.migrate import SchemaOutOfDate, ensure_schema


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    robots = RobotAccounts(db)
    try:
        if args.robot_command == "create":
            try:
                made = await robots.create(
                    args.name, args.description, args.group, args.expires, created_by="cli"
                )
            except RobotExists:
                print(f"wharf: robot {args.name} exists already", file=sys.stderr)
                return 1
            except ValueError as e:
                print(f"wharf: {e}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps({**made.robot.as_json(), "secret": made.secret}))
            else:
                print(f"name:   {made.robot.name}")
                print(f"secret: {made.secret}")
                print("(the secret is shown only now: store it, e.g. as a CI secret)")
            return 0
        if args.robot_command == "list":
            found = await robots.all()
            if args.json:
                print(json.dumps([r.as_json() for r in found]))
            for r in [] if args.json else found:
                row: dict[str, Any] = r.as_json()
                expiry = row["expires_at"] or "never"
                state = " (expired)" if row["expired"] else ""
                groups = ",".join(row["groups"]) or "-"
                print(f"{r.name}\tgroups={groups}\texpires={expiry}{state}\t{r.description}")
            return 0
        if not await robots.revoke(args.name):
            print(f"wharf: no robot {args.name}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0
    finally:
        await db.close()


def _robot(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, SchemaOutOfDate, RobotNameInvalid) as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2


def add_commands(sub: Any) -> None:
    """Add ``robot create|list|revoke`` to the ``wharf`` command."""

    robot = sub.add_parser("robot", help="robot (CI) accounts: create, list, revoke")
    robot_sub = robot.add_subparsers(dest="robot_command", required=True)
    create = robot_sub.add_parser("create", help="create a robot; prints its secret once")
    create.add_argument("name", help="robot$NAME or NAME (lowercase letters, digits, . _ -)")
    create.add_argument("--expires", default="never", help="30d, 12h, ... or never")
    create.add_argument(
        "--group", action="append", default=[], help="a group for auth.policy rules (repeat)"
    )
    create.add_argument("--description", default="")
    listing = robot_sub.add_parser("list", help="the robots (never their secrets)")
    revoke = robot_sub.add_parser("revoke", help="delete a robot: its secret stops working")
    revoke.add_argument("name")
    add_config_arguments(listing)
    for p in (create, revoke):  # their positional argument is the robot's name
        add_config_arguments(p, positional=False)
    for p in (create, listing, revoke):
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_robot)
