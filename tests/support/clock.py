"""A clock the tests move by hand (epoch seconds), for code that takes ``clock=``."""

from __future__ import annotations

T0 = 1_900_000_000.0  # a fixed "now" far from the real one


class Clock:
    """Reads ``now``; a test sets or advances it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
