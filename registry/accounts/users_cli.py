"""``wharf user create NAME [--admin] [--email E] | list | disable NAME | enable NAME |
delete NAME | passwd NAME``: local users, straight in the database of the configuration
(``-c config.yml``), with or without a running server. Passwords come from a prompt
(twice, not echoed) or, with ``--password-stdin``, from the first line of stdin; never
from the command line, where ``ps`` and shell histories would keep them.

A running server sees a new user at once, and a disabled, deleted or re-passworded one
within ``auth.local.refresh`` (see ``registry/accounts/user_logins.py``)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from auth.htpasswd import Htpasswd, HtpasswdError
from registry.accounts.errors import UserExists, UserFieldsInvalid
from registry.accounts.setup import reserved_names
from registry.accounts.users import UserAccounts
from registry.commandline import add_config_arguments
from registry.config import ConfigError, Settings, load_settings
from registry.meta.db import Database
from registry.meta.migrate import SchemaOutOfDate, ensure_schema
from registry.meta.trail import NO_TRAIL, Trail, TrailFor, command_trail


class _NoPassword(Exception):
    pass


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise _NoPassword("the two passwords differ")
    return first


def _accounts(settings: Settings, db: Database, trail: Trail = NO_TRAIL) -> UserAccounts:
    auth = settings.auth
    minimum = auth.local.minpasswordlength if auth.local is not None else 8
    htpasswd = Htpasswd(auth.htpasswd.path) if auth.htpasswd is not None else None
    return UserAccounts(db, minimum, reserved_names(htpasswd), trail=trail)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings.auth.local is None:
        print(
            "wharf: warning: auth.local is not configured: local users cannot log in "
            "until it is (see docs/auth.md)",
            file=sys.stderr,
        )
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    try:
        return await _command(args, _accounts(settings, db, command_trail(args, settings)))
    finally:
        await db.close()


async def _command(args: argparse.Namespace, users: UserAccounts) -> int:
    command = args.user_command
    if command == "list":
        found = await users.page()
        if args.json:
            print(json.dumps([u.as_json() for u in found]))
        for u in [] if args.json else found:
            flags = ",".join(f for f, on in (("admin", u.admin), ("disabled", u.disabled)) if on)
            print(f"{u.name}\t{flags or '-'}\t{u.email or '-'}")
        return 0
    name = args.name
    try:
        if command == "create":
            user = await users.create(name, _password(args), args.email, args.admin, "cli")
            print(json.dumps(user.as_json()) if args.json else f"created {user.name}")
            return 0
        if command == "delete":
            if not await users.delete(name):
                return _no_user(name)
            print(f"deleted {name}")
            return 0
        changes: dict[str, Any]
        if command == "passwd":
            changes = {"password": _password(args)}
        else:
            changes = {"disabled": command == "disable"}
        user_ = await users.update(name, changes)
        if user_ is None:
            return _no_user(name)
        print(json.dumps(user_.as_json()) if args.json else f"{command}: {name} done")
        return 0
    except UserExists:
        print(f"wharf: user {name} exists already", file=sys.stderr)
        return 1
    except (UserFieldsInvalid, _NoPassword) as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2


def _no_user(name: str) -> int:
    print(f"wharf: no local user {name}", file=sys.stderr)
    return 1


def _user(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, SchemaOutOfDate, HtpasswdError) as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("wharf: no password given", file=sys.stderr)
        return 2


def add_commands(sub: Any, trail: TrailFor | None = None) -> None:
    """Add ``user create|list|disable|enable|delete|passwd`` to the ``wharf`` command;
    ``trail``: the audit log's, per settings."""
    user = sub.add_parser("user", help="local users (auth.local): create, list, disable, ...")
    user.set_defaults(trail_for=trail)
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create a local user (password prompted)")
    create.add_argument("--admin", action="store_true", help="a system administrator")
    create.add_argument("--email", default="")
    passwd = user_sub.add_parser("passwd", help="set a user's password (prompted)")
    named = [create, passwd]
    for command, text in (
        ("disable", "refuse the user's logins (kept, with its password)"),
        ("enable", "let a disabled user log in again"),
        ("delete", "delete the user"),
    ):
        named.append(user_sub.add_parser(command, help=text))
    for p in named:
        p.add_argument("name")
        add_config_arguments(p, positional=False)
    for p in (create, passwd):
        p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    listing = user_sub.add_parser("list", help="the local users (never their passwords)")
    add_config_arguments(listing)
    for p in [*named, listing]:
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_user)
