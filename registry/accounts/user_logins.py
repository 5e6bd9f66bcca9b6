"""Local users as a login source (:class:`auth.logins.LocalSource`), with a cache.

Basic auth sends the password with every request and bcrypt costs a fraction of a
second, so a verified credential is remembered, keyed by an HMAC of the name and the
password under a per-process secret (never the password itself), with the stored hash
it verified against and when:

- within ``refresh`` of its last check the credential is answered from memory
  (:meth:`UserLogins.cached`, before any throttle);
- after that, the next login reads the user's row again: the same hash, enabled, and the
  credential is good again without bcrypt (one small read per user per ``refresh``);
  a new hash, a disabled or a deleted user, and it no longer is;
- a change made through this process (:class:`~registry.accounts.users.UserAccounts`)
  drops the user's entries at once (:meth:`UserLogins.forget`).

So a user disabled, deleted or given a new password stops working at once on the worker
that made the change, and within ``refresh`` (``auth.local.refresh``, 30 s) on the other
workers and nodes, and after a change made with ``wharf user`` on the database.

A name that is no local user is answered "unknown" (then LDAP is asked, if configured);
without LDAP it costs a bcrypt check too, so timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from auth.logins import LocalAccount
from registry.accounts import store_users as store
from registry.accounts.passwords import COST, DUMMY_PASSWORD, hash_password, verify_password
from registry.accounts.user_records import StoredUser
from registry.meta.db import Database

_CACHE_LIMIT = 4096


@dataclass
class _Verified:
    account: LocalAccount
    password_hash: str
    checked_at: float


class UserLogins:
    """Checks local users' passwords (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        refresh: float = 30.0,
        dummy_for_unknown: bool = True,
        cost: int = COST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.refresh = refresh
        self.dummy_for_unknown = dummy_for_unknown
        self.cost = cost
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._verified: dict[bytes, _Verified] = {}
        self._admins: dict[str, tuple[bool, float]] = {}  # name -> (admin, read at)
        self._dummy: str | None = None  # a hash of the cost, for unknown names

    def _dummy_check(self, password: str) -> None:
        """The work of a check for a name that is no local user (blocking)."""
        if self._dummy is None:
            self._dummy = hash_password(DUMMY_PASSWORD, self.cost)
        verify_password(password, self._dummy)

    def _key(self, user: str, password: str) -> bytes:
        name = user.encode()
        parts = len(name).to_bytes(4) + name + password.encode()
        return hmac.new(self._secret, parts, hashlib.sha256).digest()

    def _fresh(self, when: float) -> bool:
        return self.clock() - when < self.refresh

    def cached(self, user: str, password: str) -> LocalAccount | None:
        entry = self._verified.get(self._key(user, password))
        if entry is None or not self._fresh(entry.checked_at):
            return None
        return entry.account

    def seen_before(self, user: str, password: str) -> bool:
        return self._key(user, password) in self._verified

    def admin(self, user: str) -> bool:
        found = self._admins.get(user)
        return found is not None and found[0] and self._fresh(found[1])

    def forget(self, user: str) -> None:
        """Drop every remembered credential of ``user`` (it changed here)."""
        self._admins.pop(user, None)
        stale = [k for k, v in self._verified.items() if v.account.name == user]
        for key in stale:
            del self._verified[key]

    async def check(self, user: str, password: str) -> tuple[bool, LocalAccount | None]:
        found = await self.db.run_read(store.get_user, user)
        if found is None:
            self.forget(user)
            if self.dummy_for_unknown:
                await asyncio.to_thread(self._dummy_check, password)
            return False, None
        return True, await self._verify(found, user, password)

    async def _verify(self, found: StoredUser, user: str, password: str) -> LocalAccount | None:
        now = self.clock()
        self._admins[user] = (found.user.admin, now)
        key = self._key(user, password)
        entry = self._verified.get(key)
        if entry is not None and entry.password_hash == found.password_hash:
            ok = True  # verified against this very hash before: no bcrypt
        else:
            ok = await asyncio.to_thread(verify_password, password, found.password_hash)
        if not ok or found.user.disabled:
            self._verified.pop(key, None)
            return None
        account = LocalAccount(found.user.name, found.user.admin)
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified = {}
        if len(self._admins) >= _CACHE_LIMIT:
            self._admins = {}
        self._verified[key] = _Verified(account, found.password_hash, now)
        return account
