"""Starting auth: what the ``auth`` settings make (:func:`build_auth`: the gate, policy,
htpasswd file, LDAP directory, throttle and logins, loaded once when the app is built)
and what needs the running app (:func:`start_auth`: robot and local-user logins against
the database, ``/api/robots``, ``/api/users``, login metrics, the LDAP group refresh)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from starlette.types import ASGIApp

from auth.htpasswd import Htpasswd, HtpasswdError
from auth.keys import KeyFileError, load_certificates, load_jwks
from auth.ldap import LdapDirectory, LdapOptions
from auth.ldap_cache import LdapAuthenticator
from auth.logins import Login, LoginObserver, LoginRecord, Logins, RobotCheck
from auth.policy import Identity, Policy, RoleSource, Rule, Subjects
from auth.throttle import LoginThrottle
from auth.tokens import TokenVerifier
from registry.accounts.api import PREFIX, RobotsAPI
from registry.accounts.project_robots import ProjectRobots
from registry.accounts.project_robots_api import PREFIX as PROJECT_ROBOTS_PREFIX
from registry.accounts.project_robots_api import ProjectRobotsAPI, RobotAccess, handles
from registry.accounts.robots import RobotAccounts
from registry.accounts.user_logins import UserLogins
from registry.accounts.users import Reserved, UserAccounts
from registry.accounts.users_api import PREFIX as USERS_PREFIX
from registry.accounts.users_api import UsersAPI
from registry.api.context import Services
from registry.config import AuthSettings, ConfigError, LdapSettings, PolicySettings
from registry.meta.trail import NO_TRAIL, Trail
from registry.metrics import Metrics
from registry.middleware.auth import BasicGate, Gate, TokenGate
from registry.periodic import Periodic, Sleep

_log = logging.getLogger("wharf.auth")


def build_policy(settings: PolicySettings | None, roles: RoleSource | None = None) -> Policy:
    """The policy of ``auth.policy``; without one, any authenticated user may do all.
    ``roles`` (the projects' directory) adds what roles and public projects give."""
    if settings is None:
        return Policy(open_to_authenticated=True, roles=roles)
    try:
        rules = [
            Rule(
                repositories=tuple(r.repositories),
                actions=frozenset(r.actions),
                users=frozenset(r.users),
                groups=frozenset(r.groups),
                authenticated=r.authenticated,
                anonymous=r.anonymous,
                index=i,
            )
            for i, r in enumerate(settings.rules)
        ]
    except ValueError as e:
        raise ConfigError(f"auth.policy: {e}") from None
    return Policy(
        rules=rules,
        admins=Subjects(frozenset(settings.admins.users), frozenset(settings.admins.groups)),
        catalog_readers=Subjects(
            frozenset(settings.catalog.users), frozenset(settings.catalog.groups)
        ),
        groups={g: list(members) for g, members in settings.groups.items()},
        roles=roles,
    )


def ldap_refresher(ldap: LdapAuthenticator, sleep: Sleep = asyncio.sleep) -> Periodic | None:
    """The LDAP group refresh loop: every ``auth.ldap.refresh`` seconds, the first one
    ``refresh`` after the start; a failed refresh is logged and the next one comes on
    time. None without a service account (then groups are read again at each login
    after ``refresh``)."""
    if not ldap.can_refresh:
        return None
    return Periodic(
        "LDAP group refresh", ldap.refresh_once, _log, interval=ldap.refresh, sleep=sleep
    )


@dataclass
class AuthSetup:
    """Everything auth needs, loaded once at startup from ``auth``."""

    gate: Gate
    policy: Policy
    htpasswd: Htpasswd | None
    throttle: LoginThrottle
    logins: Logins

    async def authenticate(self, user: str, password: str, address: str) -> Identity | None:
        """Check a user's password against every configured source (htpasswd, LDAP,
        robot accounts; throttled, counted and logged); their identity with groups, or
        None. The one entry point for logins (Basic auth, the token service, the web
        UI's sign-in)."""
        found = await self.logins.login(user, password, address)
        return found.identity if found is not None else None

    async def login(self, user: str, password: str, address: str) -> Login | None:
        """:meth:`authenticate`, also saying which source the user came from."""
        return await self.logins.login(user, password, address)

    @property
    def ldap(self) -> LdapAuthenticator | None:
        return self.logins.ldap

    def start(
        self, robots: RobotCheck, observe: LoginObserver, ldap_operation: Callable[[str], None]
    ) -> list[asyncio.Task[None]]:
        """Wire what needs the running app (robot accounts in the database, metrics)
        and start the background tasks (the LDAP group refresh); the caller cancels
        the tasks and calls :meth:`close` at shutdown."""
        self.logins.robots = robots
        self.logins.observe = observe
        tasks: list[asyncio.Task[None]] = []
        if self.logins.ldap is not None:
            self.logins.ldap.directory.on_operation = ldap_operation
            refresher = ldap_refresher(self.logins.ldap)
            if refresher is not None:
                tasks.append(refresher.start())
        return tasks

    def close(self) -> None:
        if self.logins.ldap is not None:
            self.logins.ldap.close()


def ldap_options(settings: LdapSettings) -> LdapOptions:
    return LdapOptions(
        urls=tuple(settings.urls),
        starttls=settings.starttls,
        cacert=settings.cacert,
        binddn=settings.binddn,
        bindpassword=settings.bindpassword,
        userdn=settings.userdn,
        userbase=settings.userbase,
        userfilter=settings.userfilter,
        userattr=settings.userattr,
        groupbase=settings.groupbase,
        groupfilter=settings.groupfilter,
        groupkinds=tuple(settings.groupkinds),
        timeout=settings.timeout_seconds,
        poolsize=settings.poolsize,
    )


def build_ldap(settings: LdapSettings | None) -> LdapAuthenticator | None:
    """The LDAP authenticator of ``auth.ldap`` (nothing is contacted yet)."""
    if settings is None:
        return None
    if settings.cacert and not os.path.isfile(settings.cacert):
        raise ConfigError(f"auth.ldap.cacert: cannot read {settings.cacert}")
    try:
        directory = LdapDirectory(ldap_options(settings))
        for url in directory.urls:
            directory.server(url)  # ldap3 rejects a malformed URL here
    except Exception as e:
        raise ConfigError(f"auth.ldap: {type(e).__name__} {e}".strip()) from None
    return LdapAuthenticator(directory, refresh=settings.refresh_seconds)


def build_auth(
    settings: AuthSettings, roles: RoleSource | None = None, on_login: LoginRecord | None = None
) -> AuthSetup | None:
    """Load the htpasswd file, keys and policy (with ``roles``, the projects' directory,
    filled later); None when auth is off. Raises :class:`ConfigError` for files that
    cannot be used. ``on_login``: told of every password checked (the audit log)."""
    if settings.mode == "none":
        return None
    policy = build_policy(settings.policy, roles)
    try:
        htpasswd = Htpasswd(settings.htpasswd.path) if settings.htpasswd else None
    except HtpasswdError as e:
        raise ConfigError(str(e)) from None
    limits = settings.throttle
    throttle = LoginThrottle(
        free=limits.free,
        base=limits.base_seconds,
        cap=limits.cap_seconds,
        window=limits.window_seconds,
        max_inflight_user=limits.maxinflight.user,
        max_inflight_address=limits.maxinflight.address,
    )
    logins = Logins(policy, throttle, htpasswd, build_ldap(settings.ldap), on_login=on_login)
    logins.local_enabled = settings.local is not None
    if settings.htpasswd is not None:
        realm = settings.htpasswd.realm
    else:
        realm = settings.ldap.realm if settings.ldap is not None else "wharf"
    if settings.mode == "htpasswd":
        gate = BasicGate(logins, policy, realm)
        return AuthSetup(gate, policy, htpasswd, throttle, logins)
    token = settings.token
    assert token is not None
    try:
        roots = load_certificates(token.rootcertbundle) if token.rootcertbundle else []
        jwks = load_jwks(token.jwks) if token.jwks else {}
        server = settings.tokenserver
        if server is not None and server.enabled and not token.rootcertbundle:
            roots = load_certificates(server.certificate)[-1:]
        verifier = TokenVerifier(token.issuer, token.service, roots, jwks)
    except (KeyFileError, ValueError) as e:
        raise ConfigError(f"auth.token: {e}") from None
    local = policy if settings.tokenserver is not None and settings.tokenserver.enabled else None
    gate_ = TokenGate(verifier, token.realm, token.service, local, logins, realm)
    return AuthSetup(gate_, policy, htpasswd, throttle, logins)


def start_auth(
    setup: AuthSetup,
    services: Services,
    metrics: Metrics,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
    trail: Trail = NO_TRAIL,
) -> None:
    """At startup, with auth on: robot logins against the database, ``/api/robots``,
    login metrics, and the LDAP group refresh (cancelled and closed at shutdown).
    ``trail``: the audit log's, for robot and user changes."""
    robots = RobotAccounts(services.meta.db, services.settings.projects.default, trail)

    def observe(source: str, result: str, seconds: float) -> None:
        metrics.logins.labels(source, result).inc()
        metrics.login_duration.labels(source).observe(seconds)

    def ldap_operation(operation: str) -> None:
        metrics.ldap_operations.labels(operation).inc()

    for task in setup.start(robots.check, observe, ldap_operation):
        stack.callback(task.cancel)
    stack.callback(setup.close)
    mount(PREFIX, RobotsAPI(robots))
    local = services.settings.auth.local
    if local is not None:  # local users (auth.local): logins and /api/users
        user_logins = UserLogins(
            services.meta.db, local.refresh_seconds, dummy_for_unknown=setup.ldap is None
        )
        setup.logins.local = user_logins
        users = UserAccounts(
            services.meta.db,
            local.minpasswordlength,
            reserved_names(setup.htpasswd),
            on_change=user_logins.forget,
            trail=trail,
        )
        api = UsersAPI(
            users,
            setup.throttle,
            setup.logins.source_of,
            setup.logins.identity,
            robots,
            local.selfregistration,
        )
        mount(USERS_PREFIX, api)


def start_project_robots(
    services: Services,
    mount: Callable[[str, ASGIApp, Callable[[str], bool]], None],
    access: RobotAccess,
    trail: Trail = NO_TRAIL,
) -> None:
    """With auth on: serve ``/api/projects/NAME/robots[/ROBOT]`` (mounted for these paths
    only, before the projects API that serves the rest of ``/api/projects``); ``access``:
    who may manage a project's robots (the projects feature's roles)."""
    api = ProjectRobotsAPI(ProjectRobots(services.meta.db, trail), access)
    mount(PROJECT_ROBOTS_PREFIX, api, handles)


def reserved_names(htpasswd: Htpasswd | None) -> Reserved:
    """Names a local user cannot have: those of the htpasswd file (it answers for them)."""

    def reserved(name: str) -> str | None:
        if htpasswd is not None and htpasswd.fingerprint(name) is not None:
            return "is a user of the htpasswd file (auth.htpasswd), which answers for it"
        return None

    return reserved
