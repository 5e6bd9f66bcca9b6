"""One storage-driver suite, run against every driver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.driver import InvalidPath, PathNotFound, StorageDriver
from storage.filesystem import FilesystemDriver
from storage.memory import InMemoryDriver
from storage.s3 import S3Driver
from tests.support.s3 import RadosGateway, s3_options


@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    if request.param == "filesystem":
        yield FilesystemDriver(tmp_path / "root")
    elif request.param == "inmemory":
        yield InMemoryDriver()
    else:
        gateway: RadosGateway = request.getfixturevalue("s3")
        s3 = S3Driver(s3_options(gateway, f"suite/{uuid.uuid4().hex}"))
        yield s3
        s3.close()


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_put_get_stat(driver: StorageDriver) -> None:
    await driver.put_content("a/b/c", b"hello")
    assert await driver.get_content("a/b/c") == b"hello"
    info = await driver.stat("a/b/c")
    assert (info.size, info.is_dir) == (5, False)
    assert (await driver.stat("a/b")).is_dir
    await driver.put_content("a/b/c", b"bye")
    assert await driver.get_content("a/b/c") == b"bye"


async def test_missing_paths_raise(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFound):
        await driver.get_content("nope")
    with pytest.raises(PathNotFound):
        await driver.stat("nope/x")
    with pytest.raises(PathNotFound):
        await driver.delete("nope")
    with pytest.raises(PathNotFound):
        await collect(driver.reader("nope"))
    with pytest.raises(PathNotFound):
        await driver.move("nope", "other")


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "./a", "..", "a/.", "a\\b"])
async def test_unsafe_paths_rejected(driver: StorageDriver, bad: str) -> None:
    with pytest.raises(InvalidPath):
        await driver.put_content(bad, b"x")


async def test_reader_ranges(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 10_000
    await driver.put_content("blob", data)
    assert await collect(driver.reader("blob")) == data
    assert await collect(driver.reader("blob", 1000)) == data[1000:]
    assert await collect(driver.reader("blob", 1000, 5000)) == data[1000:6000]
    assert await collect(driver.reader("blob", len(data) - 3, 100)) == data[-3:]


async def test_writer_append_commit_cancel(driver: StorageDriver) -> None:
    w = await driver.writer("up/data")
    await w.write(b"abc")
    await w.close()
    w = await driver.writer("up/data", append=True)
    assert w.size == 3
    await w.write(b"def")
    assert w.size == 6
    await w.commit()
    assert await driver.get_content("up/data") == b"abcdef"
    w = await driver.writer("up/other")
    await w.write(b"x")
    await w.cancel()
    with pytest.raises(PathNotFound):
        await driver.stat("up/other")


async def test_list_move_delete(driver: StorageDriver) -> None:
    await driver.put_content("d/one", b"1")
    await driver.put_content("d/two/x", b"2")
    assert await driver.list("d") == ["d/one", "d/two"]
    await driver.move("d/one", "e/moved")
    assert await driver.get_content("e/moved") == b"1"
    with pytest.raises(PathNotFound):
        await driver.stat("d/one")
    await driver.put_content("e/target", b"old")
    await driver.move("e/moved", "e/target")
    assert await driver.get_content("e/target") == b"1"
    await driver.delete("d")
    with pytest.raises(PathNotFound):
        await driver.stat("d/two/x")
    assert await driver.redirect_url("e/target") is None


async def test_walk_and_delete_many(driver: StorageDriver) -> None:
    for i in range(30):
        await driver.put_content(f"w/{i % 3}/deep/f{i}", bytes(i))
    await driver.put_content("other/x", b"x")
    found = {info.path: info.size async for info in driver.walk("w")}
    assert found == {f"w/{i % 3}/deep/f{i}": i for i in range(30)}
    assert [info async for info in driver.walk("missing")] == []
    doomed = [f"w/{i % 3}/deep/f{i}" for i in range(0, 30, 2)]
    assert list(await driver.delete_many([*doomed, "w/never/there"])) == []
    left = {info.path async for info in driver.walk("w")}
    assert left == {f"w/{i % 3}/deep/f{i}" for i in range(1, 30, 2)}
    assert await driver.get_content("other/x") == b"x"


async def test_filesystem_writer_excludes_a_second_writer(tmp_path: Path) -> None:
    import asyncio

    driver = FilesystemDriver(tmp_path / "root")
    first = await driver.writer("up/data", append=True)
    second = asyncio.ensure_future(driver.writer("up/data", append=True))
    await asyncio.sleep(0.2)
    assert not second.done(), "a second writer must wait for the first to close"
    await first.write(b"abc")
    await first.close()
    other = await asyncio.wait_for(second, 5)
    assert other.size == 3
    await other.close()


async def test_filesystem_writer_syncing_in_the_background_keeps_every_byte(
    tmp_path: Path,
) -> None:
    """A big upload is synced in the background as it grows (storage.filesystem.SYNC_EVERY);
    whether it is committed or closed while such a sync runs, the file holds every byte
    in order, and no sync thread outlives the writer."""
    import hashlib
    import threading

    from storage.filesystem import SYNC_EVERY

    driver = FilesystemDriver(tmp_path / "root")
    part = bytes(range(256)) * 4096  # 1 MiB
    for finish in ("commit", "close"):
        writer = await driver.writer(f"up-{finish}/data", append=True)
        expected = hashlib.sha256()
        for i in range(3 * SYNC_EVERY // len(part) + 3):
            chunk = part[i % 256 :] + part[: i % 256]
            expected.update(chunk)
            await writer.write(chunk)
        await (writer.commit() if finish == "commit" else writer.close())
        data = (tmp_path / "root" / f"up-{finish}" / "data").read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected.hexdigest()
    assert not [t for t in threading.enumerate() if t.name.startswith("wharf-sync")]
