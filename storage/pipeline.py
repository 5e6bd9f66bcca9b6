"""Copy a byte stream into a writer while hashing it, off the event loop.

The stream is cut into batches of about 1 MiB. Each batch is hashed by one worker thread
and written by another, both owned by this copy (so batches stay in order in each, and
hashing one batch overlaps writing the one before), while the event loop goes on
receiving. The loop waits only when ``depth`` batches are in flight, so at most ``depth``
MiB of one upload is held in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable
from concurrent.futures import ThreadPoolExecutor

from storage.digest import Hasher
from storage.driver import FileWriter

BATCH = 1024 * 1024
DEPTH = 8
_INLINE = 64 * 1024


async def hash_update(hasher: Hasher, data: bytes) -> None:
    """Feed ``data`` to ``hasher``, in a worker thread when it is large."""
    if len(data) >= _INLINE:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


def _hash(hasher: Hasher, parts: list[bytes]) -> None:
    for part in parts:
        hasher.update(part)


def _hash_and_write(hasher: Hasher, writer: FileWriter, parts: list[bytes]) -> None:
    _hash(hasher, parts)
    writer.write_blocking(parts)


async def copy_hashing(
    chunks: AsyncIterable[bytes], writer: FileWriter, hasher: Hasher, depth: int = DEPTH
) -> int:
    """Write every chunk to ``writer`` and ``hasher``; return the bytes copied.

    If the stream breaks, every batch received before the break is still hashed and
    written (the file and the hash agree) and the stream's error is raised. If the
    writer fails, its error is raised and the hash may be ahead of the file.
    """
    loop = asyncio.get_running_loop()
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
    inflight: deque[asyncio.Future[tuple[None, None]]] = deque()
    parts: list[bytes] = []
    pending = copied = 0

    def submit(batch: list[bytes]) -> asyncio.Future[tuple[None, None]]:
        nonlocal threads
        if threads is None:
            threads = (
                ThreadPoolExecutor(1, thread_name_prefix="wharf-upload-hash"),
                ThreadPoolExecutor(1, thread_name_prefix="wharf-upload-write"),
            )
        hashed = loop.run_in_executor(threads[0], _hash, hasher, batch)
        written = loop.run_in_executor(threads[1], writer.write_blocking, batch)
        return asyncio.gather(hashed, written)

    try:
        try:
            async for chunk in chunks:
                parts.append(chunk)
                pending += len(chunk)
                if pending >= BATCH:
                    inflight.append(submit(parts))
                    copied += pending
                    parts, pending = [], 0
                    if len(inflight) >= depth:
                        await inflight.popleft()
        finally:
            if parts:
                if pending < _INLINE and threads is None:
                    _hash_and_write(hasher, writer, parts)
                else:
                    inflight.append(submit(parts))
                copied += pending
            while inflight:
                await inflight.popleft()
        return copied
    finally:
        for future in inflight:
            future.cancel()
        for executor in threads or ():
            executor.shutdown(wait=False)
