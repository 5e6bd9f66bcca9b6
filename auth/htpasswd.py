"""Users from an htpasswd file (bcrypt only, as the reference registry), reloaded on change.

``bcrypt`` is slow on purpose (tens of milliseconds per check), so checks run in a worker
thread, never on the event loop, and a successful check is remembered (keyed by an HMAC
of the user, password and stored hash under a per-process secret, so the password itself
is never kept). The key binds the stored hash, so a remembered check stays right across
reloads of the file: a changed password or a removed user no longer matches it.
:meth:`Htpasswd.cached` looks a credential up there without bcrypt, so a user whose
password verified once is answered at once, ahead of any throttle (see
:mod:`auth.throttle`).

An unknown user costs a bcrypt check too, at a cost the file holds, so timing does not
tell which users exist: the name picks, by an HMAC, one of the file's entries, and the
check compares against a dummy hash of that entry's cost (made on first use, one per
cost). So an unknown name costs what a known user of the file costs, with the costs as
frequent as in the file, and the same name always the same (the HMAC's key is a digest
of the file, unknown to a client: it changes only when the file does).
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
_DUMMY_PASSWORD = b"wharf-no-such-user"
_DEFAULT_COST = 10  # an unknown user's when the file has no entry
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


def bcrypt_cost(hashed: bytes) -> int | None:
    """The cost (log2 rounds) of a bcrypt hash ``$2b$NN$...``; None if malformed."""
    digits = hashed[4:6]
    if len(hashed) < 7 or hashed[6:7] != b"$" or not digits.isdigit():
        return None
    cost = int(digits)
    return cost if 4 <= cost <= 31 else None


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
        self._costs: list[int] = []  # the entries' costs, sorted
        self._cost_key = b""
        self._dummies: dict[int, bytes] = {}  # cost -> a dummy hash, made on first use
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
                    text = f.read()
            except OSError as e:
                raise HtpasswdError(f"cannot read htpasswd {self.path}: {e.strerror}") from None
            users = parse_htpasswd(text)
            costs = sorted(c for c in map(bcrypt_cost, users.values()) if c is not None)
            self._costs, self._cost_key = costs, hashlib.sha256(text.encode()).digest()
            self._users, self._stamp = users, stamp
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

    def cost_for(self, user: str) -> int:
        """The bcrypt cost a check of ``user``'s password pays: its entry's, or for an
        unknown name the cost of one of the file's entries, picked by an HMAC of the name
        (the same name, the same cost, as long as the file does not change)."""
        hashed = self._users.get(user)
        cost = bcrypt_cost(hashed) if hashed is not None else None
        if cost is not None:
            return cost
        costs = self._costs
        if not costs:
            return _DEFAULT_COST
        digest = hmac.new(self._cost_key, user.encode(), "sha256").digest()
        return costs[int.from_bytes(digest[:8]) % len(costs)]

    def _dummy(self, cost: int) -> bytes:
        """A hash of that cost for unknown users (made once per cost; blocking)."""
        dummy = self._dummies.get(cost)
        if dummy is None:
            dummy = bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(rounds=cost))
            dummy = self._dummies.setdefault(cost, dummy)
        return dummy

    def _key(self, user: str, password: str, hashed: bytes) -> bytes:
        parts = [user.encode(), password.encode(), hashed]
        return hmac.new(self._secret, b"\0".join(parts), "sha256").digest()

    def cached(self, user: str, password: str) -> bool:
        """Whether this credential verified before (no bcrypt: a stat of the file and an
        HMAC, cheap enough for the event loop). False means "check it", not "wrong"."""
        self._reload_quietly()
        hashed = self._users.get(user)
        return hashed is not None and self._key(user, password, hashed) in self._verified

    def check(self, user: str, password: str) -> bool:
        """Whether ``password`` is the user's (blocking: bcrypt; call from a thread)."""
        if self.cached(user, password):
            return True
        hashed = self._users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or self._dummy(self.cost_for(user)))
        except ValueError:  # a malformed hash
            ok = False
        if ok and hashed is not None:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified = set()
            self._verified.add(self._key(user, password, hashed))
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
