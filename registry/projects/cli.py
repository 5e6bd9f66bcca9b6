"""``wharf project create|list|show|update|delete`` and ``wharf project member
add|remove|list``: projects straight in the database of the configuration
(``-c config.yml``), with or without a running server (running servers see the change
within ``projects.refresh``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from registry.commandline import add_config_arguments
from registry.config import ConfigError, load_settings
from registry.meta.db import Database
from registry.meta.migrate import SchemaOutOfDate, ensure_schema
from registry.meta.trail import TrailFor, command_trail
from registry.projects.directory import ProjectDirectory
from registry.projects.errors import LastOwner, ProjectExists, ProjectNotEmpty
from registry.projects.manage import Problems, Projects
from registry.projects.records import Project
from registry.projects.roles import ROLES
from registry.projects.store import load_snapshot


class Failed(Exception):
    """A command that cannot be done: its message, exit status 1."""


def _print_project(p: Project, as_json: bool) -> None:
    if as_json:
        print(json.dumps(p.as_json(members=True)))
        return
    print(f"name:        {p.name}")
    print(f"public:      {'yes' if p.public else 'no'}")
    print(f"description: {p.description}")
    print(f"owner:       {p.owner or '-'}")
    print(f"created:     {p.created_at.isoformat()} by {p.created_by or '-'}")
    for m in p.members:
        print(f"member:      {m.kind} {m.name} {m.role}")


def _bool(text: str) -> bool:
    value = text.lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError("give true or false")


async def _project(projects: Projects, args: argparse.Namespace) -> None:
    command = args.project_command
    if command == "create":
        data: dict[str, Any] = {"name": args.name, "public": args.public}
        data["description"] = args.description
        try:
            made = await projects.create(data, args.owner, "cli")
        except ProjectExists:
            raise Failed(f"project {args.name} exists already") from None
        _print_project(made, args.json)
    elif command == "list":
        found = await projects.page(None, None, everything=True)
        if args.json:
            print(json.dumps([p.as_json() for p in found]))
        for p in [] if args.json else found:
            print(f"{p.name}\t{'public' if p.public else 'private'}\t{p.description}")
    elif command == "show":
        shown = await projects.get(args.name)
        if shown is None:
            raise Failed(f"no project {args.name}")
        _print_project(shown, args.json)
    elif command == "update":
        changes: dict[str, Any] = {}
        if args.public is not None:
            changes["public"] = args.public
        if args.description is not None:
            changes["description"] = args.description
        changed = await projects.update(args.name, changes)
        if changed is None:
            raise Failed(f"no project {args.name}")
        _print_project(changed, args.json)
    elif command == "delete":
        try:
            done = await projects.delete(args.name)
        except ProjectNotEmpty as e:
            raise Failed(
                f"project {args.name} holds {e.repositories} repositories: delete their "
                "manifests first, or have a running server delete them with the project "
                f"(DELETE /api/projects/{args.name}?force=true: its deletes run the change "
                "hooks, events, search and quotas, that the command line does not)"
            ) from None
        if not done:
            raise Failed(f"no project {args.name}")
        print(f"deleted project {args.name}")
    else:
        await _member(projects, args)


async def _member(projects: Projects, args: argparse.Namespace) -> None:
    command = args.member_command
    if command == "list":
        found = await projects.members(args.project)
        if found is None:
            raise Failed(f"no project {args.project}")
        if args.json:
            print(json.dumps([m.as_json() for m in found]))
        for m in [] if args.json else found:
            print(f"{m.kind}\t{m.name}\t{m.role}")
        return
    kind = "group" if args.group else "user"
    try:
        if command == "add":
            put = await projects.put_member(args.project, kind, args.name, args.role, "cli")
            if put is None:
                raise Failed(f"no project {args.project}")
            print(f"{kind} {args.name} is {args.role} of project {args.project}")
            return
        removed = await projects.remove_member(args.project, kind, args.name)
    except LastOwner:
        raise Failed(
            f"{kind} {args.name} is the last owner of project {args.project}: add another first"
        ) from None
    if removed is None:
        raise Failed(f"no project {args.project}")
    if not removed:
        raise Failed(f"{kind} {args.name} is not a member of project {args.project}")
    print(f"removed {kind} {args.name} from project {args.project}")


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    try:
        trail = command_trail(args, settings)
        await _project(Projects(db, settings.projects.default, trail=trail), args)
        return 0
    except Failed as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 1
    except Problems as e:
        for key, problem in e.problems.items():
            print(f"wharf: {key}: {problem}", file=sys.stderr)
        return 2
    finally:
        await db.close()


def _main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, SchemaOutOfDate) as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2


def load_directory(url: str, directory: ProjectDirectory) -> None:
    """Fill ``directory`` from the database at ``url`` (for ``wharf policy explain``);
    a SQLite file that does not exist is not made."""
    head, sep, path = url.partition(":///")
    if head.startswith("sqlite") and sep and not os.path.exists(path):
        raise FileNotFoundError(path)
    asyncio.run(_load(url, directory))


async def _load(url: str, directory: ProjectDirectory) -> None:
    db = Database(url, 1)
    try:
        revision, found = await db.run_read(load_snapshot)
    finally:
        await db.close()
    directory.replace(revision, found)


def add_commands(sub: Any, trail: TrailFor | None = None) -> None:
    """Add ``project create|list|show|update|delete`` and ``project member
    add|remove|list`` to the ``wharf`` command; ``trail``: the audit log's, per settings."""
    project = sub.add_parser("project", help="projects and their members")
    project.set_defaults(trail_for=trail)
    psub = project.add_subparsers(dest="project_command", required=True)
    create = psub.add_parser("create", help="create a project")
    create.add_argument("name")
    create.add_argument("--public", action="store_true", help="anyone may pull")
    create.add_argument("--description", default="")
    create.add_argument("--owner", help="a user who becomes the project's owner")
    listing = psub.add_parser("list", help="every project")
    show = psub.add_parser("show", help="a project with its members")
    show.add_argument("name")
    update = psub.add_parser("update", help="change public or description")
    update.add_argument("name")
    update.add_argument("--public", type=_bool, metavar="true|false")
    update.add_argument("--description")
    delete = psub.add_parser("delete", help="delete a project that holds no repositories")
    delete.add_argument("name")
    member = psub.add_parser("member", help="members: add, remove, list")
    msub = member.add_subparsers(dest="member_command", required=True)
    add = msub.add_parser("add", help="add a member or change its role")
    add.add_argument("project")
    add.add_argument("name", help="a user name, or a group with --group")
    add.add_argument("role", choices=ROLES)
    remove = msub.add_parser("remove", help="remove a member")
    remove.add_argument("project")
    remove.add_argument("name")
    for p in (add, remove):
        p.add_argument("--group", action="store_true", help="NAME is a group")
    members = msub.add_parser("list", help="a project's members")
    members.add_argument("project")
    add_config_arguments(listing)
    for p in (create, show, update, delete, add, remove, members):
        add_config_arguments(p, positional=False)
    for p in (create, listing, show, update, delete, add, remove, members):
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_main)
