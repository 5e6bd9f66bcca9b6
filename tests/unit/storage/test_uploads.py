"""Upload sessions: chunked appends, resume across processes, digest checks."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest
from storage.memory import InMemoryDriver
from storage.uploads import (
    UploadDigestMismatch,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadStore,
)


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_chunked_upload_commits_to_blob_store() -> None:
    driver = InMemoryDriver()
    uploads, blobs = UploadStore(driver), BlobStore(driver)
    data = b"x" * 3_000_000 + b"tail"
    uid = await uploads.create("repo")
    assert await uploads.append(uid, stream(data[:1_500_000]), 0) == 1_500_000
    assert await uploads.append(uid, stream(data[1_500_000:]), 1_500_000) == len(data)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    assert await uploads.commit(uid, digest) == len(data)
    assert await blobs.get(digest) == data
    with pytest.raises(UploadNotFound):
        await uploads.size(uid)


async def test_out_of_order_chunk_is_refused_and_changes_nothing() -> None:
    uploads = UploadStore(InMemoryDriver())
    uid = await uploads.create("repo")
    await uploads.append(uid, stream(b"abc"))
    with pytest.raises(UploadOffsetMismatch) as err:
        await uploads.append(uid, stream(b"zzz"), 10)
    assert err.value.size == 3
    assert await uploads.size(uid) == 3


async def test_resume_in_another_process_rehashes() -> None:
    driver = InMemoryDriver()
    data = b"0123456789" * 200_000
    first = UploadStore(driver)
    uid = await first.create("repo")
    await first.append(uid, stream(data[:777_777]))
    second = UploadStore(driver)  # a restarted process: no hash state in memory
    await second.append(uid, stream(data[777_777:]), 777_777)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    assert await second.commit(uid, digest) == len(data)


async def test_sha512_and_wrong_digest() -> None:
    driver = InMemoryDriver()
    uploads, blobs = UploadStore(driver), BlobStore(driver)
    uid = await uploads.create("repo")
    await uploads.append(uid, stream(b"payload"))
    d512 = Digest("sha512", hashlib.sha512(b"payload").hexdigest())
    await uploads.commit(uid, d512)
    assert await blobs.get(d512) == b"payload"
    uid = await uploads.create("repo")
    await uploads.append(uid, stream(b"payload"))
    wrong = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(UploadDigestMismatch):
        await uploads.commit(uid, wrong)
    with pytest.raises(BlobNotFound):
        await blobs.stat(wrong)
    with pytest.raises(UploadNotFound):
        await uploads.size(uid)


async def test_broken_stream_keeps_what_arrived() -> None:
    uploads = UploadStore(InMemoryDriver())
    uid = await uploads.create("repo")

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * (1024 * 1024)
        yield b"b" * 1000
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await uploads.append(uid, broken())
    size = await uploads.size(uid)
    assert size == 1024 * 1024 + 1000
    await uploads.append(uid, stream(b"c"), size)
    data = b"a" * (1024 * 1024) + b"b" * 1000 + b"c"
    await uploads.commit(uid, Digest("sha256", hashlib.sha256(data).hexdigest()))


async def test_unknown_and_malformed_ids() -> None:
    uploads = UploadStore(InMemoryDriver())
    for bad in ["nope", "../../etc/passwd", "0" * 36]:
        with pytest.raises(UploadNotFound):
            await uploads.size(bad)


async def test_purge_removes_only_old_uploads() -> None:
    import time

    uploads = UploadStore(InMemoryDriver())
    old = await uploads.create("repo")
    await uploads.append(old, stream(b"stale"))
    cutoff = time.time()
    fresh = await uploads.create("repo")
    assert await uploads.purge(cutoff, dry_run=True) == [old]
    assert await uploads.size(old) == 5
    assert await uploads.purge(cutoff) == [old]
    with pytest.raises(UploadNotFound):
        await uploads.size(old)
    assert await uploads.ids() == [fresh]
