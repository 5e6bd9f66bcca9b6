"""``wharf robot create NAME | list | revoke NAME``: robot accounts, straight in the
database of the configuration (``-c config.yml``), with or without a running server.

With ``--project PROJECT`` they are the project's robots (``robot$PROJECT+NAME``):
``create --project team ci --permission 'app,tools/*:pull,push'``, ``list --project
team``, ``revoke --project team ci`` (or ``revoke 'robot$team+ci'``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from auth.policy import Identity
from registry.accounts import robot_grants, store
from registry.accounts.errors import RobotExists, RobotFieldsInvalid, RobotNameInvalid
from registry.accounts.project_robots import ProjectRobots
from registry.accounts.robots import NewRobot, RobotAccounts
from registry.accounts.store_project_robots import ProjectGone
from registry.accounts.store_users import get_user
from registry.accounts.user_records import User
from registry.commandline import add_config_arguments
from registry.config import ConfigError, load_settings
from registry.meta.db import Database
from registry.meta.migrate import SchemaOutOfDate, ensure_schema
from registry.meta.trail import TrailFor, command_trail


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    trail = command_trail(args, settings)
    robots = RobotAccounts(db, settings.projects.default, trail)
    project = _project_of(args)
    try:
        if project is not None:
            return await _run_project(args, project, ProjectRobots(db, trail))
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
            _print_new(made, args.json)
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


def _print_new(made: NewRobot, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**made.robot.as_json(), "secret": made.secret}))
    else:
        print(f"name:   {made.robot.name}")
        print(f"secret: {made.secret}")
        print("(the secret is shown only now: store it, e.g. as a CI secret)")


def _project_of(args: argparse.Namespace) -> str | None:
    """``--project``, or the project of a ``robot$PROJECT+NAME`` given to revoke."""
    if args.project:
        return str(args.project)
    name = getattr(args, "name", None) or ""
    if name.startswith("robot$") and "+" in name:
        return name[len("robot$") :].partition("+")[0]
    return None


def permission_of(text: str) -> dict[str, list[str]]:
    """``app,tools/*:pull,push`` as ``{"repositories": [...], "actions": [...]}``."""
    repositories, sep, actions = text.rpartition(":")
    if not sep:
        raise ValueError(f"--permission {text!r}: use PATTERNS:ACTIONS, e.g. 'app,tools/*:pull'")
    return {"repositories": repositories.split(","), "actions": actions.split(",")}


async def _run_project(args: argparse.Namespace, project: str, robots: ProjectRobots) -> int:
    if args.robot_command == "create":
        try:
            permissions = [permission_of(p) for p in args.permission]
            data = {"name": args.name, "permissions": permissions, "expires": args.expires}
            data["description"] = args.description
            if args.group:
                raise ValueError("a project robot has permissions (--permission), not groups")
            made = await robots.create(project, data, created_by="cli")
        except RobotExists:
            print(f"wharf: robot {args.name} of {project} exists already", file=sys.stderr)
            return 1
        except ProjectGone:
            print(f"wharf: no project {project}", file=sys.stderr)
            return 1
        except (RobotFieldsInvalid, ValueError) as e:
            print(f"wharf: {e}", file=sys.stderr)
            return 2
        _print_new(made, args.json)
        return 0
    if args.robot_command == "list":
        found = await robots.all(project)
        if args.json:
            print(json.dumps([r.as_json() for r in found]))
            return 0
        for r in found:
            expiry = r.expires_at.isoformat() if r.expires_at else "never"
            state = " (expired)" if r.expired() else ""
            grants = " ".join(
                f"{','.join(p.repositories)}:{','.join(p.actions)}" for p in r.permissions
            )
            print(f"{r.name}\tpermissions={grants}\texpires={expiry}{state}\t{r.description}")
        return 0
    if not await robots.revoke(project, args.name):
        print(f"wharf: no robot {args.name} in project {project}", file=sys.stderr)
        return 1
    print(f"revoked {args.name}")
    return 0


def robot_identity(database_url: str, name: str, default_project: str) -> Identity:
    """A project robot's identity read from the database, for ``wharf policy explain``
    (one that may nothing if there is no such robot)."""

    async def read() -> Identity:
        db = Database(database_url, 1)
        try:
            robot = await db.run_read(store.get_robot, name)
        finally:
            await db.close()
        if robot is None or robot.project is None:
            return Identity(name, grants=())
        return robot_grants.identity(robot, default_project)

    return asyncio.run(read())


def local_user(database_url: str, name: str) -> User | None:
    """A local user read from the database, for ``wharf policy explain`` (None: none)."""

    async def read() -> User | None:
        db = Database(database_url, 1)
        try:
            stored = await db.run_read(get_user, name)
        finally:
            await db.close()
        return None if stored is None else stored.user

    return asyncio.run(read())


def _robot(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, SchemaOutOfDate, RobotNameInvalid) as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2


def add_commands(sub: Any, trail: TrailFor | None = None) -> None:
    """Add ``robot create|list|revoke`` to the ``wharf`` command; ``trail``: the audit
    log's, per settings."""

    robot = sub.add_parser("robot", help="robot (CI) accounts: create, list, revoke")
    robot.set_defaults(trail_for=trail)
    robot_sub = robot.add_subparsers(dest="robot_command", required=True)
    create = robot_sub.add_parser("create", help="create a robot; prints its secret once")
    create.add_argument("name", help="robot$NAME or NAME (lowercase letters, digits, . _ -)")
    create.add_argument("--expires", default="never", help="30d, 12h, ... or never")
    create.add_argument(
        "--group", action="append", default=[], help="a group for auth.policy rules (repeat)"
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--permission",
        action="append",
        default=[],
        help="with --project: PATTERNS:ACTIONS, e.g. 'app,tools/*:pull,push' (repeat)",
    )
    listing = robot_sub.add_parser("list", help="the robots (never their secrets)")
    revoke = robot_sub.add_parser("revoke", help="delete a robot: its secret stops working")
    revoke.add_argument("name")
    add_config_arguments(listing)
    for p in (create, revoke):  # their positional argument is the robot's name
        add_config_arguments(p, positional=False)
    for p in (create, listing, revoke):
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--project", default=None, help="a project's robot (robot$PROJECT+NAME)")
        p.set_defaults(func=_robot)
