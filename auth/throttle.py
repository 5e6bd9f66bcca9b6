"""Password guessing: failures counted per user and per client address, checks in flight
bounded per user and per address.

Two figures bound how fast anyone can guess passwords, in each worker process:

- **Failures slow their own answer.** After ``free`` failures within ``window`` seconds
  (the count of a user or an address restarts ``window`` after its last failure), the
  answer of each further failure for that user or from that address waits
  ``base * 2**(failures - free)`` seconds, at most ``cap``. Only failures wait: the
  password is checked first, so a correct one is answered at once, however many wrong
  guesses were made for its user (the throttle must not be a lever against its victim).
  A success clears no count either: the victim logging in would otherwise keep wiping
  the count of an attacker guessing from elsewhere.
- **Few checks in flight.** An attempt holds a slot of its address (at most
  ``max_inflight_address``) and of its user (at most ``max_inflight_user``) from before
  its password is checked until it is answered, failures' waits included. An attempt
  that finds no free slot is refused at once (:class:`TooManyAttempts`: HTTP 429
  ``TOOMANYREQUESTS``), before any check: a refusal says nothing about the password. So
  parallel connections guess no faster than ``max_inflight / delay`` per user and per
  address, and a sequential guesser one guess per delay.

The user's bound would let a guesser fill a victim's slots, so an attempt is not held to
it (only to its address's) when the address has no recent failure and nothing else in
flight: a user logging in from a clean address is never refused because someone
elsewhere guesses their password. Each address gets at most one such attempt at a time,
and only until its first failure. :class:`auth.logins.Logins` also exempts robot
accounts (random secrets nobody guesses) and credentials that verified before; and a
credential cached as verified (htpasswd, LDAP) never comes here at all.

The counts live in one process's memory, the failures bounded to ``max_keys`` entries
(oldest dropped), the attempts in flight by their number.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TooManyAttempts(Exception):
    """Too many password checks in flight for this user or from this address: refused
    before the password was checked. Answer HTTP 429 with :attr:`headers`."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__("too many login attempts in progress, try again later")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LoginThrottle:
    """The figures of the module docstring, with a clock the tests can move."""

    def __init__(
        self,
        free: int = 3,
        base: float = 0.25,
        cap: float = 4.0,
        window: float = 900.0,
        max_inflight_user: int = 4,
        max_inflight_address: int = 8,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.window = free, base, cap, window
        self.max_inflight_user = max(1, max_inflight_user)
        self.max_inflight_address = max(1, max_inflight_address)
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._inflight: dict[str, int] = {}

    def _count(self, key: str) -> int:
        entry = self._failures.get(key)
        if entry is None:
            return 0
        count, last = entry
        if self.clock() - last > self.window:
            del self._failures[key]
            return 0
        return count

    def failures(self, user: str, address: str) -> int:
        """The larger of the user's and the address's recent failure counts."""
        return max(self._count(f"u:{user}"), self._count(f"a:{address}"))

    def delay(self, user: str, address: str) -> float:
        """Seconds the answer of this user's (or address's) next failure waits."""
        n = self.failures(user, address)
        if n < self.free:
            return 0.0
        return float(min(self.base * 2 ** (n - self.free), self.cap))

    def failed(self, user: str, address: str) -> int:
        """Count a failure; returns the new count (the larger of user and address)."""
        now = self.clock()
        counts = []
        for key in (f"u:{user}", f"a:{address}"):
            count = self._count(key) + 1
            self._failures[key] = (count, now)
            self._failures.move_to_end(key)
            counts.append(count)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return max(counts)

    def succeeded(self, user: str, address: str) -> None:
        """Forget the counts of ``user`` and ``address`` (an operator's reset: a login
        does not call this, see the module docstring)."""
        self._failures.pop(f"u:{user}", None)
        self._failures.pop(f"a:{address}", None)

    def in_flight(self, user: str, address: str) -> tuple[int, int]:
        """Attempts in flight for ``user`` and from ``address``."""
        return self._inflight.get(f"u:{user}", 0), self._inflight.get(f"a:{address}", 0)

    @contextmanager
    def attempt(self, user: str, address: str, *, user_bound: bool = True) -> Iterator[None]:
        """Hold a slot of the user and of the address while the body checks a password
        (and waits out a failure's delay); :class:`TooManyAttempts` if there is none.
        ``user_bound=False`` exempts the attempt from the user's bound (a robot, a
        credential that verified before); so does a clean address, see the module."""
        user_key, address_key = f"u:{user}", f"a:{address}"
        users, addresses = self._inflight.get(user_key, 0), self._inflight.get(address_key, 0)
        clean = addresses == 0 and self._count(address_key) == 0
        if addresses >= self.max_inflight_address or (
            user_bound and not clean and users >= self.max_inflight_user
        ):
            raise TooManyAttempts(max(self.delay(user, address), 1.0))
        self._inflight[user_key] = users + 1
        self._inflight[address_key] = addresses + 1
        try:
            yield
        finally:
            for key in (user_key, address_key):
                left = self._inflight[key] - 1
                if left:
                    self._inflight[key] = left
                else:
                    del self._inflight[key]
