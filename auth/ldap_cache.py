"""LDAP logins with their caches, off the event loop, and the background group refresh.

:class:`LdapAuthenticator` runs the blocking work of :class:`~auth.ldap.LdapDirectory` in
its own thread pool (never on the event loop) and caches, per process:

- verified credentials (an HMAC of name and password under a per-process secret, never
  the password itself) for ``refresh`` seconds: a Basic-auth request does not bind every
  time, and a changed password or a removed account takes effect within ``refresh``.
  :meth:`LdapAuthenticator.cached` answers from there without LDAP, ahead of the login
  throttle (:mod:`auth.throttle`); a credential whose entry expired is still known to
  have verified once (:meth:`LdapAuthenticator.seen_before`): it is bound again, but is
  not held to the throttle's per-user bound (a guesser cannot produce it);
- each user's groups, read again for the users seen lately by a background task every
  ``refresh`` seconds (:meth:`LdapAuthenticator.refresh_once`, run by the accounts
  feature's loop: ``registry.accounts.setup.ldap_refresher``), so a user removed from a
  group loses that group's access within ``refresh`` even while they keep logging in
  with cached credentials. A token already issued stays valid until it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from auth.ldap import LdapDirectory, LdapUnavailable, LdapUser, valid_name

log = logging.getLogger("wharf.auth")


@dataclass
class _Known:
    """A user seen lately: where it is and its groups."""

    dn: str
    groups: frozenset[str]
    seen: float
    refreshed: float


@dataclass
class LdapAuthenticator:
    """Logins against an :class:`LdapDirectory`, off the event loop, with the caches
    described in the module docstring."""

    directory: LdapDirectory
    refresh: float = 300.0
    keep: float = 3600.0  # users not seen for this long are no longer refreshed
    max_users: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _executor: ThreadPoolExecutor = field(init=False)
    _secret: bytes = field(init=False, default_factory=lambda: secrets.token_bytes(32))
    _verified: dict[bytes, tuple[str, float]] = field(init=False, default_factory=dict)
    _known: OrderedDict[str, _Known] = field(init=False, default_factory=OrderedDict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        workers = self.directory.options.poolsize + 2
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="wharf-ldap")

    @property
    def can_refresh(self) -> bool:
        """Groups can be read again without the user's password (a service account)."""
        return bool(self.directory.options.binddn)

    def _key(self, user: str, password: str) -> bytes:
        return hmac.new(
            self._secret, b"\0".join([user.encode(), password.encode()]), hashlib.sha256
        ).digest()

    def cached(self, user: str, password: str) -> LdapUser | None:
        """The user, if this credential verified within ``refresh`` (no LDAP call: cheap
        enough for the event loop); None means "check it", not "wrong"."""
        if not password or not valid_name(user):
            return None
        now = self.clock()
        verified = self._verified.get(self._key(user, password))
        if verified is None or verified[1] <= now:
            return None
        known = self._known.get(verified[0])
        if known is None:
            return None
        known.seen = now
        self._known.move_to_end(verified[0])
        return LdapUser(verified[0], known.dn, known.groups)

    def seen_before(self, user: str, password: str) -> bool:
        """Whether this credential verified once, even if that is older than ``refresh``
        (it is then checked again, but :mod:`auth.throttle` need not hold it to the
        user's bound: a guesser cannot produce it)."""
        return bool(password) and self._key(user, password) in self._verified

    async def authenticate(self, user: str, password: str) -> LdapUser | None:
        """The user with its groups, or None; raises :class:`LdapUnavailable`."""
        if not password or not valid_name(user):
            return None
        found_cached = self.cached(user, password)
        if found_cached is not None:
            return found_cached
        key = self._key(user, password)
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(
            self._executor, self.directory.authenticate, user, password
        )
        if found is None:
            self._verified.pop(key, None)
            return None
        now = self.clock()
        with self._lock:
            if len(self._verified) >= self.max_users:
                self._verified = {k: v for k, v in self._verified.items() if v[1] > now}
                if len(self._verified) >= self.max_users:
                    self._verified.clear()
            self._verified[key] = (found.name, now + self.refresh)
            self._known[found.name] = _Known(found.dn, found.groups, now, now)
            self._known.move_to_end(found.name)
            while len(self._known) > self.max_users:
                self._known.popitem(last=False)
        return found

    def cached_groups(self, name: str) -> frozenset[str]:
        """The groups last read for ``name`` (no LDAP call); empty if unknown."""
        known = self._known.get(name)
        return known.groups if known is not None else frozenset()

    def _forget(self, name: str) -> None:
        with self._lock:
            self._known.pop(name, None)
            self._verified = {k: v for k, v in self._verified.items() if v[0] != name}

    async def refresh_once(self) -> int:
        """Read again the groups of the users seen within ``keep``; forget the others
        and the users gone from the directory. Returns how many were refreshed."""
        now = self.clock()
        stale = [n for n, k in self._known.items() if now - k.seen > self.keep]
        for name in stale:
            self._forget(name)
        loop = asyncio.get_running_loop()
        done = 0
        for name, known in list(self._known.items()):
            try:
                groups = await loop.run_in_executor(
                    self._executor, self.directory.lookup, known.dn, name
                )
            except LdapUnavailable as e:
                log.warning("LDAP group refresh stopped: %s", e)
                break  # keep what we had; try again next time
            if groups is None:
                log.info("LDAP user %s is gone from the directory", name)
                self._forget(name)
                continue
            if groups != known.groups:
                log.info("LDAP groups of %s now: %s", name, ", ".join(sorted(groups)) or "none")
            known.groups, known.refreshed = groups, self.clock()
            done += 1
        return done

    def close(self) -> None:
        """Unbind the pooled connections (in the LDAP threads, not the event loop)."""
        self._executor.submit(self.directory.close)
        self._executor.shutdown(wait=False)
