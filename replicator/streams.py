"""Byte streams for copying: cutting one stream into chunks, and a bandwidth limit."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``16M`` -> 16777216; ``""`` -> 0. Raises ValueError for anything else."""
    if not text:
        return 0
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


class RateLimit:
    """A token bucket shared by every transfer of a run (``rate`` bytes/s; 0: unlimited)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._allowance = float(rate)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._allowance = min(
                float(self.rate), self._allowance + (now - self._last) * self.rate
            )
            self._last = now
            self._allowance -= n
            if self._allowance < 0:
                await asyncio.sleep(-self._allowance / self.rate)


class ChunkReader:
    """Hands out consecutive pieces of one byte stream, ``length`` bytes at a time."""

    def __init__(self, source: AsyncIterator[bytes], limit: RateLimit | None = None) -> None:
        self._source = source
        self._pending = b""
        self._limit = limit
        self.read = 0  # bytes handed out so far

    async def take(self, length: int) -> AsyncIterator[bytes]:
        """The next ``length`` bytes (fewer only if the source ends early)."""
        left = length
        while left > 0:
            if not self._pending:
                try:
                    self._pending = await anext(self._source)
                except StopAsyncIteration:
                    return
                if self._limit is not None:
                    await self._limit.take(len(self._pending))
            piece, self._pending = self._pending[:left], self._pending[left:]
            left -= len(piece)
            self.read += len(piece)
            yield piece
