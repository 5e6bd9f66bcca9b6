"""read_capped: the one reader of a request body up to a byte limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from registry.api.bodies import read_capped


class TooLarge(Exception):
    pass


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_exactly_at_the_limit_is_read_whole() -> None:
    assert await read_capped(_chunks(b"abc", b"de", b"fgh"), 8, TooLarge) == b"abcdefgh"


async def test_one_byte_over_raises_the_callers_error() -> None:
    with pytest.raises(TooLarge):
        await read_capped(_chunks(b"abc", b"de", b"fghi"), 8, TooLarge)


async def test_an_empty_stream_is_empty_bytes() -> None:
    assert await read_capped(_chunks(), 0, TooLarge) == b""


async def test_the_error_is_made_only_when_the_limit_is_passed() -> None:
    made: list[int] = []

    def too_large() -> Exception:
        made.append(1)
        return TooLarge()

    assert await read_capped(_chunks(b"x" * 10), 10, too_large) == b"x" * 10
    assert made == []


async def test_a_huge_stream_stops_being_read_after_the_limit() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 1000

    with pytest.raises(TooLarge):
        await read_capped(endless(), 4500, TooLarge)
    assert pulled == 5  # the fifth chunk passes 4500 bytes; no sixth is asked for
