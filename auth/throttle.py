"""Failed logins, counted per user and per client address, slow the next attempts.

After ``free`` failures within ``window`` seconds, each further attempt for that user or
from that address waits ``base * 2**(failures - free)`` seconds (at most ``cap``) before
its password is even checked. A success clears the user's and the address's count. The
counts live in one process's memory (each worker counts its own), bounded in size.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class LoginThrottle:
    def __init__(
        self,
        free: int = 3,
        base: float = 0.25,
        cap: float = 4.0,
        window: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.window = free, base, cap, window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

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
        """Seconds to wait before checking this attempt's password."""
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
        self._failures.pop(f"u:{user}", None)
        self._failures.pop(f"a:{address}", None)
