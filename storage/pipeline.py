"""Copy a byte stream into a writer while hashing it, with the event loop only gathering.

The stream is cut into batches of about 1 MiB. Two consumer tasks take the batches in
order: one feeds the hash in a worker thread, the other hands them to the writer (whose
file I/O runs in a worker thread too). The producer waits only when ``depth`` batches
are in flight, so at most ``depth`` MiB of one upload is ever held in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable

from storage.digest import Hasher
from storage.driver import FileWriter

BATCH = 1024 * 1024
DEPTH = 8
_SMALL = 64 * 1024


async def _consume(
    queue: asyncio.Queue[bytes | None], step: Callable[[bytes], Awaitable[None]]
) -> None:
    while True:
        batch = await queue.get()
        if batch is None:
            return
        await step(batch)


async def hash_update(hasher: Hasher, data: bytes) -> None:
    """Feed ``data`` to ``hasher``, in a worker thread when it is large."""
    if len(data) >= _SMALL:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


async def copy_hashing(
    chunks: AsyncIterable[bytes], writer: FileWriter, hasher: Hasher, depth: int = DEPTH
) -> int:
    """Write every chunk to ``writer`` and ``hasher``; return the bytes copied.

    If the stream breaks, every batch received in full before the break is written
    and hashed (so the file and the hash agree) and the error is raised. If the
    writer fails, its error is raised and the hash may be ahead of the file.
    """
    to_hash: asyncio.Queue[bytes | None] = asyncio.Queue(depth)
    to_write: asyncio.Queue[bytes | None] = asyncio.Queue(depth)
    hashing = asyncio.create_task(_consume(to_hash, lambda b: hash_update(hasher, b)))
    writing = asyncio.create_task(_consume(to_write, writer.write))
    consumers = (hashing, writing)
    copied = 0
    parts: list[bytes] = []
    pending = 0

    async def put(batch: bytes | None) -> None:
        for queue, consumer in ((to_hash, hashing), (to_write, writing)):
            if consumer.done():
                _raise_failed(consumer)
            if not queue.full():
                queue.put_nowait(batch)
                continue
            putting = asyncio.ensure_future(queue.put(batch))
            await asyncio.wait([putting, consumer], return_when=asyncio.FIRST_COMPLETED)
            if not putting.done():
                putting.cancel()
                _raise_failed(consumer)

    try:
        try:
            async for chunk in chunks:
                parts.append(chunk)
                pending += len(chunk)
                if pending >= BATCH:
                    batch = b"".join(parts)
                    parts.clear()
                    pending = 0
                    await put(batch)
                    copied += len(batch)
        except BaseException:
            await put(None)
            await asyncio.gather(*consumers)
            raise
        if parts:
            batch = b"".join(parts)
            await put(batch)
            copied += len(batch)
        await put(None)
        await asyncio.gather(*consumers)
        return copied
    finally:
        for c in consumers:
            if not c.done():
                c.cancel()


def _raise_failed(task: asyncio.Task[None]) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error
    raise RuntimeError("pipeline consumer stopped early")
