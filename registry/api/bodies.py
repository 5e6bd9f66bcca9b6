"""Reading a request body up to a byte limit."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable


async def read_capped(
    stream: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]
) -> bytes:
    """The whole of ``stream``, or ``too_large()`` raised once more than ``limit`` bytes came.

    Reading stops at the chunk that passes the limit; the rest is never asked for.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
