"""One login check over every source of users: robot accounts, htpasswd, LDAP.

A name starting with ``robot$`` is only ever a robot account (checked in the database);
a name in the htpasswd file is checked there (a person there is not looked up in LDAP
too, unless the password is wrong); any other name goes to LDAP. Every attempt is
slowed by the recent failures of the user and of the address (:class:`LoginThrottle`),
counted by source and result, and timed; failures are logged without the password.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from auth.htpasswd import Htpasswd
from auth.ldap import LdapAuthenticator, LdapUnavailable
from auth.policy import Identity, Policy
from auth.throttle import LoginThrottle

log = logging.getLogger("wharf.auth")

ROBOT_PREFIX = "robot$"
# (name, secret) -> the robot's groups, or None (unknown, wrong secret, expired)
RobotCheck = Callable[[str, str], Awaitable[Iterable[str] | None]]
# (source, result, seconds): result is "success", "failure" or "error"
LoginObserver = Callable[[str, str, float], None]


@dataclass(frozen=True)
class Login:
    """A successful login: who, and where the user came from."""

    identity: Identity
    source: str  # "htpasswd", "ldap" or "robot"


@dataclass
class Logins:
    """Checks passwords against the configured sources."""

    policy: Policy
    throttle: LoginThrottle
    htpasswd: Htpasswd | None = None
    ldap: LdapAuthenticator | None = None
    robots: RobotCheck | None = None  # set once the database is open
    observe: LoginObserver | None = None

    def source_of(self, user: str) -> str:
        """Which source a name belongs to (before its password is checked)."""
        if user.startswith(ROBOT_PREFIX):
            return "robot"
        if self.htpasswd is not None and (self.ldap is None or self.htpasswd.knows(user)):
            return "htpasswd"
        return "ldap" if self.ldap is not None else "htpasswd"

    async def login(self, user: str, password: str, address: str) -> Login | None:
        """The login, or None (counted as a failure, logged without the password)."""
        wait = self.throttle.delay(user, address)
        if wait:
            await asyncio.sleep(wait)
        source = self.source_of(user)
        started = time.perf_counter()
        result = "failure"
        found: Login | None = None
        try:
            found = await self._check(source, user, password)
            result = "success" if found is not None else "failure"
        except LdapUnavailable as e:
            result = "error"
            log.error("LDAP unavailable, login of %r refused: %s", user[:100], e)
        finally:
            if self.observe is not None:
                self.observe(source, result, time.perf_counter() - started)
        if found is not None:
            self.throttle.succeeded(user, address)
            return found
        count = self.throttle.failed(user, address)
        log.warning(
            "failed login for user %r from %s (%d recent failures)", user[:100], address, count
        )
        return None

    async def _check(self, source: str, user: str, password: str) -> Login | None:
        if source == "robot":
            groups = await self.robots(user, password) if self.robots is not None else None
            if groups is None:
                return None
            return Login(self.policy.identity(user, groups), "robot")
        if source == "htpasswd" and self.htpasswd is not None:
            if await self.htpasswd.authenticate(user, password):
                return Login(self.policy.identity(user), "htpasswd")
            if self.ldap is None:
                return None
        if self.ldap is not None:
            found = await self.ldap.authenticate(user, password)
            if found is not None:
                return Login(self.policy.identity(found.name, found.groups), "ldap")
        return None

    def identity(self, name: str) -> Identity:
        """The identity of a user named by a token, with its cached LDAP groups (no LDAP
        call: a bearer request never reaches the directory)."""
        extra = self.ldap.cached_groups(name) if self.ldap is not None else frozenset()
        return self.policy.identity(name, extra)
