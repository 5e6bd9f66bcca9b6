"""What only the S3 driver does: multipart uploads continued by another node, reading a
file being written, server-side multipart copies, presigned redirects, aborts."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from storage.digest import Digest
from storage.layout import blob_path
from storage.s3 import S3Driver
from storage.uploads import UploadStore
from tests.support.s3 import RadosGateway, s3_options

MiB = 1024 * 1024


@pytest.fixture
def make_driver(s3: RadosGateway) -> Iterator[Any]:
    """Drivers on one fresh prefix of the session bucket: each stands for one node."""
    root = f"unit/{uuid.uuid4().hex}"
    made: list[S3Driver] = []

    def factory(**extra: Any) -> S3Driver:
        driver = S3Driver(s3_options(s3, root, **extra))
        made.append(driver)
        return driver

    yield factory
    for d in made:
        d.close()


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def pending_uploads(driver: S3Driver) -> int:
    """Multipart uploads still open under the driver's root (aborting them)."""
    later = time.time() + 60
    return sum([await driver.abort_stale_writes(p, later) for p in ("x", "up", "uploads")])


async def keys_under(driver: S3Driver, path: str) -> list[str]:
    pages = driver._client.get_paginator("list_objects_v2").paginate(
        Bucket=driver.bucket, Prefix=driver.key(path)
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


async def test_append_across_nodes_then_commit(make_driver: Any) -> None:
    a, b = make_driver(), make_driver()
    data = os.urandom(17 * MiB + 123)
    pieces = [data[: 3 * MiB], data[3 * MiB : 7 * MiB], data[7 * MiB : 13 * MiB], data[13 * MiB :]]
    w = await a.writer("up/data")
    await w.write(pieces[0])
    await w.close()
    for i, piece in enumerate(pieces[1:]):
        node = (b, a)[i % 2]
        w = await node.writer("up/data", append=True)
        assert w.size == sum(len(p) for p in pieces[: i + 1])
        w.write_blocking([piece])
        await w.close()
        # any node sees the size, and can read the bytes so far (the pending parts too)
        other = (a, b)[i % 2]
        end = sum(len(p) for p in pieces[: i + 2])
        assert (await other.stat("up/data")).size == end
        assert await collect(other.reader("up/data", 0, end)) == data[:end]
    assert await collect(a.reader("up/data", 5 * MiB - 10, 20)) == data[5 * MiB - 10 : 5 * MiB + 10]
    w = await b.writer("up/data", append=True)
    await w.commit()
    assert (await a.stat("up/data")).size == len(data)
    assert await collect(a.reader("up/data")) == data
    assert await keys_under(a, "up") == [a.key("up/data")], "sidecars must be gone"
    assert await pending_uploads(a) == 0


async def test_upload_store_on_two_nodes(make_driver: Any) -> None:
    driver = make_driver()
    node_a, node_b = UploadStore(driver), UploadStore(make_driver())
    data = os.urandom(12 * MiB + 5)

    async def chunks(blob: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(blob), 256 * 1024):
            yield blob[i : i + 256 * 1024]

    upload = await node_a.create("library/x")
    offset = 0
    for n, size in enumerate([1 * MiB, 6 * MiB, 2 * MiB, 3 * MiB + 5]):
        store = (node_b, node_a)[n % 2]
        offset = await store.append(upload, chunks(data[offset : offset + size]), offset)
    assert offset == len(data)
    digest = Digest.of(data)
    assert await node_b.commit(upload, digest, len(data)) == len(data)
    assert await collect(driver.reader(blob_path(digest))) == data
    assert await node_a.ids() == []
    assert await pending_uploads(driver) == 0


async def test_cancel_and_delete_abort_multipart(make_driver: Any) -> None:
    d = make_driver()
    w = await d.writer("up/one/data")
    w.write_blocking([os.urandom(6 * MiB)])
    await w.close()
    assert (await d.stat("up/one/data")).size == 6 * MiB
    assert await d.list("up/one") == ["up/one/data"]
    await d.delete("up/one")
    w = await d.writer("up/two/data")
    w.write_blocking([os.urandom(6 * MiB)])
    await w.cancel()
    assert await keys_under(d, "up") == []
    assert await pending_uploads(d) == 0


async def test_append_to_a_finished_object(make_driver: Any) -> None:
    d = make_driver()
    small, big = os.urandom(1000), os.urandom(6 * MiB)
    await d.put_content("x/small", small)
    await d.put_content("x/big", big)
    for path, first in (("x/small", small), ("x/big", big)):
        w = await d.writer(path, append=True)
        assert w.size == len(first)
        await w.write(b"more")
        await w.commit()
        assert await d.get_content(path) == first + b"more"


async def test_move_large_object_uses_multipart_copy(make_driver: Any) -> None:
    d = make_driver(multipart_copy_threshold=6 * MiB, copy_part_size=5 * MiB)
    data = os.urandom(13 * MiB)
    await d.put_content("x/src", data)
    await d.move("x/src", "x/dst")
    assert await d.get_content("x/dst") == data
    assert not await keys_under(d, "x/src")


async def test_presigned_redirect(make_driver: Any) -> None:
    d = make_driver(redirect=True, redirect_expiry=60)
    await d.put_content("x/blob", b"presigned bytes")
    url = await d.redirect_url("x/blob")
    assert url is not None and "Signature" in url
    sig = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = url[:sig] + ("0" if url[sig] != "0" else "1") + url[sig + 1 :]
    other = url.replace("x/blob", "x/other")
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"presigned bytes"
        assert (await http.get(tampered)).status_code == 403
        assert (await http.get(other)).status_code == 403
    assert await make_driver().redirect_url("x/blob") is None


async def test_stale_multipart_uploads_are_aborted(make_driver: Any) -> None:
    d = make_driver()
    key = d.key("uploads/abandoned/data")
    d._client.create_multipart_upload(Bucket=d.bucket, Key=key)
    assert await d.abort_stale_writes("uploads", time.time() - 3600) == 0
    assert await d.abort_stale_writes("uploads", time.time() + 60) == 1
    assert await d.abort_stale_writes("uploads", time.time() + 60) == 0


async def test_upload_purge_aborts_multipart_uploads(make_driver: Any) -> None:
    d = make_driver()
    store = UploadStore(d)

    async def one(blob: bytes) -> AsyncIterator[bytes]:
        yield blob

    upload = await store.create("library/x")
    await store.append(upload, one(os.urandom(6 * MiB)))  # one part sent, the rest a tail
    orphan = d._client.create_multipart_upload(Bucket=d.bucket, Key=d.key("uploads/o/data"))
    assert await store.purge(time.time() - 3600) == []
    assert await store.purge(time.time() + 60) == [upload]
    assert await keys_under(d, "uploads") == []
    uploads = d._client.list_multipart_uploads(Bucket=d.bucket, Prefix=d.key("uploads"))
    assert orphan["UploadId"] not in [u["UploadId"] for u in uploads.get("Uploads", [])]
    assert uploads.get("Uploads", []) == []
