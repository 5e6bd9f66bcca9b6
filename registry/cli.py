"""The ``wharf`` command: ``serve``, ``db upgrade``, ``config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from registry.accounts.cli import add_commands as robot_commands
from registry.accounts.users_cli import add_commands as user_commands
from registry.audit.cli import add_commands as audit_commands
from registry.audit.setup import cli_trail
from registry.backup.cli import add_commands as backup_commands
from registry.check.cli import add_commands as check_commands
from registry.commandline import add_config_arguments, settings_or_exit
from registry.config import ConfigError, Settings
from registry.config.redact import redact
from registry.events.cli import add_commands as events_commands
from registry.events.setup import outbox_writer
from registry.gc.cli import add_commands as gc_commands
from registry.immutability.cli import add_commands as immutable_commands
from registry.logs import configure_logging
from registry.meta.migrate import (
    SchemaOutOfDate,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from registry.metrics import MULTIPROC_ENV
from registry.projects.cli import add_commands as project_commands
from registry.quotas.cli import add_commands as quota_commands
from registry.quotas.hook import gc_removed
from registry.retention.cli import add_commands as retention_commands
from registry.scrub.cli import add_commands as scrub_commands
from registry.search.cli import add_commands as search_commands
from replicator.cli import add_commands as replicator_commands
from replicator.mirror_store import MirrorRoots

if TYPE_CHECKING:
    from auth.policy import Identity, Policy
    from registry.retention.setup import Retention


@contextlib.asynccontextmanager
async def _open_retention(settings: Settings) -> AsyncIterator[Retention]:
    """The registry's features started in this process without serving (their hooks run
    with every delete), for ``wharf retention``."""
    from registry.app import Wharf

    app = Wharf(settings)
    await app.startup()
    try:
        assert app.retention is not None
        yield app.retention
    finally:
        await app.shutdown()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.app import CONFIG_ENV, check_auth, create_app
    from registry.drivers import make_driver
    from registry.httplimits import ConnectionLimits, protocol_class, raise_file_limit

    settings = settings_or_exit(args.config)
    configure_logging(settings.log)
    make_driver(settings)
    try:
        check_auth(settings)
    except ConfigError as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(ensure_schema(settings.database_url))
    except SchemaOutOfDate as e:
        print(f"wharf: {e}", file=sys.stderr)
        return 2
    host, port = settings.http.bind
    tls = settings.http.tls
    limits = ConnectionLimits.from_settings(settings.http)
    raise_file_limit(limits)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_config": None,
        "proxy_headers": True,
        "server_header": False,
        # header and body-idle timeouts, the per-worker connection cap (registry/httplimits.py)
        "http": protocol_class(limits),
        "ws": "none",  # no WebSocket routes: an Upgrade is not taken up
        "timeout_keep_alive": math.ceil(settings.http.timeouts.keepalive_seconds),
        # a worker importing the app slowly (a loaded machine) is not killed and respawned
        "timeout_worker_healthcheck": 60,
        "ssl_certfile": tls.certificate or None,
        "ssl_keyfile": tls.key or None,
    }
    workers = settings.http.worker_count
    if workers > 1:
        if args.config:
            os.environ[CONFIG_ENV] = os.path.abspath(args.config)
        with tempfile.TemporaryDirectory(prefix="wharf-metrics-") as metrics_dir:
            # Every worker writes its metrics here; /metrics on any worker adds them up.
            os.environ[MULTIPROC_ENV] = metrics_dir
            with _debug_listener(settings, None):
                uvicorn.run("registry.app:create_app", factory=True, workers=workers, **common)
    else:
        app = create_app(settings)
        with _debug_listener(settings, app.metrics.registry):
            uvicorn.run(app, **common)
    return 0


@contextlib.contextmanager
def _debug_listener(settings: Settings, registry: CollectorRegistry | None) -> Iterator[None]:
    """``http.debug.addr`` while the server runs: ``registry``'s metrics, or (None) every
    worker's, added up from the multiprocess directory."""
    if not settings.http.debug.addr:
        yield
        return
    from prometheus_client import multiprocess

    from registry.debug import DebugServer

    if registry is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server = DebugServer(settings.http.debug, registry)
    try:
        yield
    finally:
        server.close()


def _db(args: argparse.Namespace) -> int:
    settings = settings_or_exit(args.config)
    url = settings.database_url
    if args.db_command == "upgrade":
        asyncio.run(upgrade(url))
        print(f"database at revision {head_revision()}")
    else:
        current = asyncio.run(current_revision(url))
        print(f"database revision: {current or 'none'} (code expects {head_revision()})")
        return 0 if current == head_revision() else 1
    return 0


def _config(args: argparse.Namespace) -> int:
    settings = settings_or_exit(args.config)
    print(json.dumps(redact(settings.model_dump()), indent=2))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from auth.keys import generate_self_signed

    os.makedirs(args.directory, exist_ok=True)
    key_pem, cert_pem = generate_self_signed(args.cn, args.algorithm, args.days)
    key_path = os.path.join(args.directory, "token.key")
    cert_path = os.path.join(args.directory, "token.crt")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    with open(cert_path, "wb") as f:
        f.write(cert_pem)
    print(f"wrote {key_path} (private, 0600) and {cert_path}")
    print("use them as auth.tokenserver.key / .certificate (and auth.token.rootcertbundle)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from auth.logins import is_project_robot
    from registry.accounts.setup import build_policy
    from registry.projects.cli import load_directory
    from registry.projects.setup import build_directory

    settings = settings_or_exit(args.config)
    directory = build_directory(settings.projects)  # the projects' roles, from the database
    try:
        load_directory(settings.database_url, directory)
        roles, note = directory, None
    except Exception as e:
        roles, note = None, f"projects not read ({type(e).__name__}): the config's rules only"
    policy = build_policy(settings.auth.policy, roles)
    who = None if args.user in ("-", "anonymous") else policy.identity(args.user)
    if who is not None and is_project_robot(args.user):  # its permissions, from the database
        from registry.accounts.cli import robot_identity

        who = robot_identity(settings.database_url, args.user, settings.projects.default)
    if who is not None and not is_project_robot(args.user):
        who, found = _local_or_ldap(settings, policy, args.user)
        note = note or found
    decision = policy.explain(who, args.repository)
    actions = ",".join(sorted(decision.expanded)) or "nothing"
    print(f"{args.user} on {args.repository}: {actions}")
    print(f"  because {decision.reason}")
    if note is not None:
        print(f"  ({note})")
    if who is not None and who.groups:
        print(f"  groups: {', '.join(sorted(who.groups))}")
    return 0


def _local_or_ldap(settings: Settings, policy: Policy, user: str) -> tuple[Identity, str | None]:
    """The identity of ``user`` as a server sees it after the user's login: a local user
    with its ``admin`` flag, else with the groups LDAP gives it (read with the service
    account); and a note on what could not be read."""
    from auth.ldap import LdapDirectory, LdapUnavailable
    from auth.policy import Identity
    from registry.accounts.cli import local_user
    from registry.accounts.setup import ldap_options

    if settings.auth.local is not None:
        try:
            found = local_user(settings.database_url, user)
        except Exception as e:
            return policy.identity(user), f"local users not read ({type(e).__name__})"
        if found is not None:
            identity = policy.identity(user)
            note = "a disabled local user: it cannot log in" if found.disabled else None
            return Identity(identity.name, identity.groups, admin=found.admin), note
    if settings.auth.ldap is None:
        return policy.identity(user), None
    directory = LdapDirectory(ldap_options(settings.auth.ldap))
    try:
        groups = directory.groups_of(user)
    except LdapUnavailable as e:
        return policy.identity(user), f"LDAP not reached ({e}): static groups only"
    finally:
        directory.close()
    if groups is None:
        return policy.identity(user), "not an LDAP user: static groups only"
    return policy.identity(user, groups), None


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="wharf", description="Wharf, an OCI container image registry.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registry (HTTP API on http.addr)")
    add_config_arguments(serve)
    serve.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["upgrade", "current"])
    add_config_arguments(db)
    db.set_defaults(func=_db)
    cfg = sub.add_parser("config", help="print the effective configuration")
    add_config_arguments(cfg)
    cfg.set_defaults(func=_config)
    auth = sub.add_parser("auth", help="token service keys")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    keygen = auth_sub.add_parser("keygen", help="a signing key and self-signed certificate")
    keygen.add_argument("directory", help="where to write token.key and token.crt")
    keygen.add_argument("--algorithm", choices=["ES256", "RS256"], default="ES256")
    keygen.add_argument("--cn", default="wharf token signer", help="certificate common name")
    keygen.add_argument("--days", type=int, default=365)
    keygen.set_defaults(func=_keygen)
    policy = sub.add_parser("policy", help="access policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_sub.add_parser("explain", help="what USER may do in REPOSITORY, and why")
    explain.add_argument("user", help="user name ('anonymous' for callers without one)")
    explain.add_argument("repository")
    add_config_arguments(explain, positional=False)
    explain.set_defaults(func=_explain)
    replicator_commands(sub)  # wharf replicate (#6)
    search_commands(sub)  # wharf search reindex (#8)
    backup_commands(sub)  # wharf backup, wharf restore (#18)
    check_commands(sub)  # wharf check (#18)
    # the administrative commands record their changes in the audit log (#16)
    robot_commands(sub, cli_trail)  # wharf robot create|list|revoke (#4)
    user_commands(sub, cli_trail)  # wharf user create|list|disable|enable|delete|passwd (#15)
    # wharf gc (#7), keeping the mirror's cache (#6), usage per project going down (#15)
    gc_commands(sub, [MirrorRoots()], lambda s: [gc_removed(s.projects.default).removed], cli_trail)
    project_commands(sub, cli_trail)  # wharf project (#15)
    quota_commands(sub, cli_trail)  # wharf quota set|show|recount (#15)
    immutable_commands(sub)  # wharf immutable add|list|remove (#16)
    retention_commands(sub, _open_retention)  # wharf retention run|show (#16)
    audit_commands(sub)  # wharf audit export (#16)
    events_commands(sub)  # wharf events status|dead|requeue (#5)
    scrub_commands(sub, outbox_writer)  # wharf scrub (#18), its scrub_bad events (#5)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wharf`` command."""
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
