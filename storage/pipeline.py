"""Copy a byte stream into a writer while hashing it, off the event loop.

The stream is cut into batches of about 1 MiB. Each batch is hashed by one worker thread
and written by another, both owned by this copy (so batches stay in order in each, and
hashing one batch overlaps writing the one before), while the event loop goes on
receiving. The loop waits only when ``depth`` batches are in flight, so at most ``depth``
MiB of one upload is held in memory.

Once a write fails (a full disk), the batches after it are not written, so the file
stays a prefix of the stream; and the copy returns only when no thread of it touches the
writer any more (the caller closes it next).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
    writer fails, its error is raised, nothing after the failed batch is written and the
    hash may be ahead of the file.
    """
    loop = asyncio.get_running_loop()
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
    inflight: deque[asyncio.Future[tuple[None, None]]] = deque()
    failed = threading.Event()  # set once a write failed: later batches are skipped
    parts: list[bytes] = []
    pending = copied = 0
    done = False

    def write(batch: list[bytes]) -> None:
        if failed.is_set():
            return
        try:
            writer.write_blocking(batch)
        except BaseException:
            failed.set()
            raise

    def submit(batch: list[bytes]) -> asyncio.Future[tuple[None, None]]:
        nonlocal threads
        if threads is None:
            threads = (
                ThreadPoolExecutor(1, thread_name_prefix="wharf-upload-hash"),
                ThreadPoolExecutor(1, thread_name_prefix="wharf-upload-write"),
            )
        hashed = loop.run_in_executor(threads[0], _hash, hasher, batch)
        written = loop.run_in_executor(threads[1], write, batch)
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
            if parts and not failed.is_set():
                if pending < _INLINE and threads is None:
                    _hash_and_write(hasher, writer, parts)
                else:
                    inflight.append(submit(parts))
                copied += pending
            while inflight:
                await inflight.popleft()
        done = True
        return copied
    finally:
        if threads is not None:
            if done:  # every batch finished: the threads are idle
                for executor in threads:
                    executor.shutdown(wait=False)
            else:  # a failed write (or a cancel) may leave batches running or queued
                failed.set()
                for future in inflight:
                    future.add_done_callback(_seen)
                await _join(threads)


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark an error nobody awaits as retrieved (no "never retrieved" log)."""
    if not future.cancelled():
        future.exception()


async def _join(threads: tuple[ThreadPoolExecutor, ...]) -> None:
    """Return once the threads are gone, so that none touches the writer afterwards (the
    caller closes it next): queued batches are dropped, a running one is waited for."""

    def join() -> None:
        for executor in threads:
            executor.shutdown(wait=True, cancel_futures=True)

    try:
        await asyncio.to_thread(join)
    except asyncio.CancelledError:
        join()  # cancelled while waiting: wait here (at most one batch's write)
        raise
