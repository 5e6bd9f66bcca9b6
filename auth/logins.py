"""One login check over every source of users: robot accounts, htpasswd, local users
(the database), LDAP.

The source is picked by the name, in this order:

1. a name starting with ``robot$`` is only ever a robot account (checked in the database);
2. a name in the htpasswd file is checked there (a person there is not looked up in LDAP
   too, unless the password is wrong);
3. a name of a local user (``auth.local``: the ``users`` table) is checked against its
   bcrypt hash, and only there (a wrong password is not tried in LDAP);
4. any other name goes to LDAP.

Every check is counted by source and result, and timed; failures are logged without the
password.

Against guessing (:mod:`auth.throttle`), in this order:

1. A credential cached as verified (htpasswd, LDAP within ``refresh``, a local user
   within ``auth.local.refresh``) is answered at once: no throttle, no slot, no wait,
   however many guesses are made for its user.
2. Identical credentials being checked at the same moment share one check (a CI fleet
   logging in with one account after a restart takes one slot, not one each).
3. Any other attempt needs a slot of its address and of its user, or is refused at once
   with :class:`~auth.throttle.TooManyAttempts` (HTTP 429), before its password is checked. Robot
   accounts and LDAP or local credentials that verified before are not held to the
   user's bound.
4. The password is checked first: a success is answered at once; a failure is counted
   and its answer waits the throttle's delay, keeping its slots meanwhile, which is
   what bounds the guessing rate of parallel connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from auth.htpasswd import Htpasswd
from auth.ldap import LdapUnavailable
from auth.ldap_cache import LdapAuthenticator
from auth.policy import Identity, Policy
from auth.throttle import LoginThrottle, TooManyAttempts

log = logging.getLogger("wharf.auth")

ROBOT_PREFIX = "robot$"
PROJECT_ROBOT_SEPARATOR = "+"  # robot$PROJECT+NAME: a robot scoped to a project
MAX_SCOPED = 10_000  # project robots' identities remembered per worker (token mode)
# (name, secret) -> a system robot's groups, a project robot's whole identity (with its
# grants), or None (unknown, wrong secret, expired)
RobotCheck = Callable[[str, str], Awaitable[Iterable[str] | Identity | None]]
# (source, result, seconds): result is "success", "failure" or "error"
LoginObserver = Callable[[str, str, float], None]
# (user, source, result): every password actually checked (not one answered from the
# cache of verified credentials), for the audit log; must not block or raise
LoginRecord = Callable[[str, str, str], None]  # result: success, failure, error, throttled
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class LocalAccount:
    """A local user whose password checked out."""

    name: str
    admin: bool = False


class LocalSource(Protocol):
    """The users of the database (``auth.local``), as :class:`Logins` asks them: set once
    the database is open (``registry.accounts`` implements it)."""

    def cached(self, user: str, password: str) -> LocalAccount | None:
        """The account if this credential verified lately (no I/O, no bcrypt)."""
        ...

    def seen_before(self, user: str, password: str) -> bool:
        """Whether this credential verified before (its cache entry may have expired)."""
        ...

    def admin(self, user: str) -> bool:
        """Whether ``user`` was a local administrator when last read (no I/O)."""
        ...

    async def check(self, user: str, password: str) -> tuple[bool, LocalAccount | None]:
        """(whether ``user`` is a local user at all, the account if the password is
        right and the user enabled)."""
        ...


@dataclass(frozen=True)
class Login:
    """A successful login: who, and where the user came from."""

    identity: Identity
    source: str  # "htpasswd", "ldap", "local" or "robot"


@dataclass
class Logins:
    """Checks passwords against the configured sources."""

    policy: Policy
    throttle: LoginThrottle
    htpasswd: Htpasswd | None = None
    ldap: LdapAuthenticator | None = None
    robots: RobotCheck | None = None  # set once the database is open
    local: LocalSource | None = None  # auth.local: set once the database is open
    local_enabled: bool = False  # auth.local is configured (known before the database)
    observe: LoginObserver | None = None
    on_login: LoginRecord | None = None
    sleep: Sleep = asyncio.sleep  # how a failure's answer waits (the tests' fake clock)
    _secret: bytes = field(init=False, repr=False, default_factory=lambda: secrets.token_bytes(32))
    _pending: dict[bytes, asyncio.Task[Login | None]] = field(
        init=False, repr=False, default_factory=dict
    )
    # the last identity of each project robot that logged in here (token mode names
    # callers by the token's subject only)
    _scoped: dict[str, Identity] = field(init=False, repr=False, default_factory=dict)

    def source_of(self, user: str) -> str:
        """Which source a name belongs to (before its password is checked)."""
        if user.startswith(ROBOT_PREFIX):
            return "robot"
        if self.htpasswd is not None and self.htpasswd.knows(user):
            return "htpasswd"
        if self.local_enabled:
            return "local"  # or LDAP, if the database has no such user (see _check)
        if self.ldap is not None:
            return "ldap"
        return "htpasswd"

    async def login(self, user: str, password: str, address: str) -> Login | None:
        """The login, or None (counted as a failure, logged without the password, answered
        after the throttle's delay). Raises :class:`~auth.throttle.TooManyAttempts` when
        the user or the address has too many checks in flight (see the module docstring)."""
        source = self.source_of(user)
        started = time.perf_counter()
        found = self._cached(source, user, password)
        if found is not None:
            self._observe(source, "success", started)
            return found
        name = user.encode()
        parts = len(name).to_bytes(4) + name + password.encode()
        digest = hmac.new(self._secret, parts, hashlib.sha256).digest()
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.create_task(self._attempt(source, user, password, address))
            self._pending[digest] = task
            task.add_done_callback(lambda t: self._done(digest, t))
        # shielded: a client that hangs up does not cancel a check others wait for
        try:
            return await asyncio.shield(task)
        except TooManyAttempts:
            if self.on_login is not None:
                self.on_login(user, source, "throttled")
            raise

    def _done(self, digest: bytes, task: asyncio.Task[Login | None]) -> None:
        self._pending.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved, even if every waiter hung up

    def _cached(self, source: str, user: str, password: str) -> Login | None:
        """A login from the sources' caches of verified credentials (no bcrypt, no LDAP)."""
        if source == "robot":
            return None
        if source == "htpasswd" and self.htpasswd and self.htpasswd.cached(user, password):
            return Login(self.policy.identity(user), "htpasswd")
        if source == "local" and self.local is not None:
            account = self.local.cached(user, password)
            if account is not None:
                return self._local_login(account)
        if self.ldap is not None:
            found = self.ldap.cached(user, password)
            if found is not None:
                return Login(self.policy.identity(found.name, found.groups), "ldap")
        return None

    async def _attempt(self, source: str, user: str, password: str, address: str) -> Login | None:
        """Check the password in a slot of the throttle; a failure's answer waits."""
        trusted = (
            source == "robot"
            or (self.ldap is not None and self.ldap.seen_before(user, password))
            or (self.local is not None and self.local.seen_before(user, password))
        )
        with self.throttle.attempt(user, address, user_bound=not trusted):
            started = time.perf_counter()
            result = "failure"
            found: Login | None = None
            checked = source
            try:
                found, checked = await self._check(source, user, password)
                result = "success" if found is not None else "failure"
            except LdapUnavailable as e:
                result, checked = "error", "ldap" if source == "local" else source
                log.error("LDAP unavailable, login of %r refused: %s", user[:100], e)
            finally:
                self._observe(checked, result, started)
                if self.on_login is not None:
                    self.on_login(user, checked, result)
            if found is not None:
                return found
            wait = self.throttle.delay(user, address)
            count = self.throttle.failed(user, address)
            log.warning(
                "failed login for user %r from %s (%d recent failures)", user[:100], address, count
            )
            if wait:
                await self.sleep(wait)
            return None

    def _observe(self, source: str, result: str, started: float) -> None:
        if self.observe is not None:
            self.observe(source, result, time.perf_counter() - started)

    async def _check(self, source: str, user: str, password: str) -> tuple[Login | None, str]:
        """The login (or None) and the source that answered."""
        if source == "robot":
            groups = await self.robots(user, password) if self.robots is not None else None
            if groups is None:
                return None, source
            if isinstance(groups, Identity):  # a project robot: its grants, nothing else
                if len(self._scoped) >= MAX_SCOPED:
                    self._scoped.clear()
                self._scoped[user] = groups
                return Login(groups, "robot"), source
            return Login(self.policy.identity(user, groups), "robot"), source
        if source == "htpasswd" and self.htpasswd is not None:
            if await self.htpasswd.authenticate(user, password):
                return Login(self.policy.identity(user), "htpasswd"), source
            if self.ldap is None:
                return None, source
        if source == "local":
            known, account = (False, None)
            if self.local is not None:
                known, account = await self.local.check(user, password)
            if account is not None:
                return self._local_login(account), source
            if known or self.ldap is None:
                return None, source
        # a name not in the database (or a wrong htpasswd password) goes to LDAP; the
        # metrics count it under "ldap" when the database did not know the name
        answered = "ldap" if source == "local" and self.ldap is not None else source
        if self.ldap is not None:
            found = await self.ldap.authenticate(user, password)
            if found is not None:
                return Login(self.policy.identity(found.name, found.groups), "ldap"), answered
        return None, answered

    def _local_login(self, account: LocalAccount) -> Login:
        identity = self.policy.identity(account.name)
        if account.admin:
            identity = Identity(identity.name, identity.groups, admin=True)
        return Login(identity, "local")

    def identity(self, name: str) -> Identity:
        """The identity of a user named by a token, with its cached LDAP groups and local
        admin flag (no LDAP or database call: a bearer request never reaches them). A
        project robot is its identity at its last login here, else one that may nothing
        (never a user's rules and roles)."""
        if is_project_robot(name):
            return self._scoped.get(name) or Identity(name, grants=())
        extra = self.ldap.cached_groups(name) if self.ldap is not None else frozenset()
        identity = self.policy.identity(name, extra)
        if self.local is not None and self.local.admin(name):
            identity = Identity(identity.name, identity.groups, admin=True)
        return identity


def is_project_robot(name: str) -> bool:
    """``robot$PROJECT+NAME`` (a system robot's name has no ``+``)."""
    return name.startswith(ROBOT_PREFIX) and PROJECT_ROBOT_SEPARATOR in name
