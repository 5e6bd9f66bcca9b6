"""A clock the tests move by hand (epoch seconds), for code that takes ``clock=``."""

from __future__ import annotations

import time
from pathlib import Path

T0 = 1_900_000_000.0  # a fixed "now" far from the real one


class Clock:
    """Reads ``now``; a test sets or advances it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ServerClock:
    """The wall clock of server processes, moved by the test: libfaketime (Debian's
    ``faketime`` package) preloaded into the process reads its offset from a file on
    every call, so :meth:`advance` moves ``time.time()`` (and SQLite's
    ``CURRENT_TIMESTAMP``) of a running ``wharf serve`` and its workers at once. The
    monotonic clock is left alone, so timeouts and asyncio's timers run as usual.

    Pass it as ``WharfServer(..., clock=ServerClock(tmp_path / "clock"))``."""

    LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

    def __init__(self, path: Path) -> None:
        if not self.LIBRARY.exists():
            raise RuntimeError(f"{self.LIBRARY} is missing: scripts/install.sh --test installs it")
        self.path = path
        self.offset = 0.0
        self._write()

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.LIBRARY),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }

    def advance(self, seconds: float) -> None:
        """Move the servers' clock ``seconds`` forward (from now on, every call)."""
        self.offset += seconds
        self._write()

    def now(self) -> float:
        """What the servers' ``time.time()`` reads now."""
        return time.time() + self.offset

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.offset:+.3f}\n")
        tmp.replace(self.path)
