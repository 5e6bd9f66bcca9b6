"""Users from an htpasswd file (bcrypt only, as the reference registry), reloaded on change.

``bcrypt`` is slow on purpose (tens of milliseconds per check), so checks run in a worker
thread, never on the event loop, and a successful check is remembered (keyed by an HMAC
of the user, password and stored hash under a per-process secret, so the password itself
is never kept) until the file changes. An unknown user costs a bcrypt check too, so
timing does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import threading

import bcrypt

log = logging.getLogger("wharf.auth")

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# compared against when the user is unknown, so that costs as much as a wrong password
_DUMMY_HASH = bcrypt.hashpw(b"wharf-no-such-user", bcrypt.gensalt(rounds=10))
_CACHE_LIMIT = 4096


class HtpasswdError(Exception):
    """The htpasswd file cannot be read."""


def parse_htpasswd(text: str) -> dict[str, bytes]:
    """``user:hash`` lines (comments and blank lines skipped); non-bcrypt entries are
    dropped with a warning."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("htpasswd line %d is not user:hash, ignored", number)
            continue
        if not hashed.startswith(_BCRYPT_PREFIXES):
            log.warning("htpasswd user %s has no bcrypt hash, ignored", user)
            continue
        users[user] = hashed.encode()
    return users


def hash_password(password: str, rounds: int = 10) -> str:
    """A bcrypt hash for an htpasswd line (``$2b$``, accepted by htpasswd readers)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


class Htpasswd:
    """An htpasswd file, read again whenever its modification time or size changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._users: dict[str, bytes] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; True if it was (re)loaded."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise HtpasswdError(f"cannot read htpasswd file {self.path}: {e.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as f:
                    users = parse_htpasswd(f.read())
            except OSError as e:
                raise HtpasswdError(f"cannot read htpasswd {self.path}: {e.strerror}") from None
            self._users, self._stamp = users, stamp
            self._verified = set()
        log.info("htpasswd %s loaded: %d users", self.path, len(users))
        return True

    def users(self) -> list[str]:
        return sorted(self._users)

    def knows(self, user: str) -> bool:
        """Whether the file has ``user`` (as it was last read)."""
        return user in self._users

    def fingerprint(self, user: str) -> str | None:
        """A short digest of the user's stored hash (changes with the password); None if
        the user is unknown. Refresh tokens carry it, so a new password revokes them."""
        self._reload_quietly()
        hashed = self._users.get(user)
        return None if hashed is None else hashlib.sha256(hashed).hexdigest()[:16]

    def check(self, user: str, password: str) -> bool:
        """Whether ``password`` is the user's (blocking: bcrypt; call from a thread)."""
        self._reload_quietly()
        hashed = self._users.get(user)
        key = hmac.new(
            self._secret, b"\0".join([user.encode(), password.encode(), hashed or b""]), "sha256"
        ).digest()
        if hashed is not None and key in self._verified:
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH)
        except ValueError:  # a malformed hash
            ok = False
        if ok and hashed is not None:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified = set()
            self._verified.add(key)
            return True
        return False

    async def authenticate(self, user: str, password: str) -> bool:
        """:meth:`check` in a worker thread."""
        return await asyncio.to_thread(self.check, user, password)

    def _reload_quietly(self) -> None:
        try:
            self.reload_if_changed()
        except HtpasswdError as e:  # keep the users we had: a half-written file is transient
            log.warning("%s", e)
