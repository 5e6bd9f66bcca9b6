"""A full disk (issue #13, item 10): a push that runs out of space answers 507.

Each test mounts a small tmpfs of its own (root only; CI runs as root) and puts the
registry's storage on it, in the second test its SQLite database too. What is checked
is what a user sees: the 507 and its OCI JSON body saying storage is full, that nothing
of the failed push is visible (no blob, tag or manifest; catalog unchanged), that what
was pushed before still pulls byte for byte, that the space the failed push took is
free again (``os.statvfs``), and that once there is room a push succeeds again.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    OCI_MANIFEST,
    assert_error,
    blob_file,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    start_upload,
    unique_name,
    upload_ids,
)
from tests.support.server import WharfServer

MiB = 1024 * 1024
FS_SIZE = 32 * MiB
FS_INODES = 4096  # few, so that a test can use them all up (a rename into a new directory)
# What a failed push may leave used: the SQLite WAL frames of a failed commit, a few pages.
MARGIN = 256 * 1024
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs on a fresh directory, unmounted afterwards (also on failure)."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs: run them as root (CI does)")
    mountpoint = tmp_path / "small-fs"
    mountpoint.mkdir()
    options = f"size={FS_SIZE},nr_inodes={FS_INODES},mode=0755"
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {mountpoint}: {r.stderr.strip() or r.returncode}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)  # busy: detach it


def free_bytes(mountpoint: Path) -> int:
    st = os.statvfs(mountpoint)
    return st.f_bavail * st.f_frsize


def free_inodes(mountpoint: Path) -> int:
    return os.statvfs(mountpoint).f_favail


def fill_bytes(path: Path) -> None:
    """Write ``path`` until the filesystem has not a byte left."""
    with path.open("wb", buffering=0) as f:
        for chunk in (b"\0" * MiB, b"\0" * 4096):
            try:
                while f.write(chunk):
                    pass
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    assert free_bytes(path.parent) == 0


def fill_inodes(directory: Path) -> None:
    """Create empty files in ``directory`` until the filesystem has no inode left."""
    directory.mkdir()
    try:
        for i in range(FS_INODES + 1):
            (directory / str(i)).touch()
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    assert free_inodes(directory) == 0


def assert_storage_full(r: httpx.Response) -> None:
    """507 with the OCI error body, saying that storage is full."""
    assert r.status_code == 507, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["code"] == "UNKNOWN", error
    assert "storage is full" in error["message"], error


def tmp_files(root: Path) -> list[Path]:
    """Temporary files (an atomic write's, before its rename) left under ``root``."""
    return [p for p in root.rglob("*.tmp") if p.is_file()]


class Image:
    """A small image pushed before the disk fills up, and checks that it still pulls."""

    def __init__(self, client: httpx.Client) -> None:
        self.name = unique_name("full")
        self.layer = os.urandom(200_000)
        self.config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        self.digest, self.manifest = push_image(client, self.name, "v1", [self.layer], self.config)

    def assert_pulls(self, c: httpx.Client) -> None:
        r = c.get(f"/v2/{self.name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200, r.text
        assert r.content == self.manifest
        assert r.headers["docker-content-digest"] == self.digest
        for blob in (self.config, self.layer):
            r = c.get(f"/v2/{self.name}/blobs/{digest_of(blob)}")
            assert r.status_code == 200, r.text
            assert r.content == blob


def listing(c: httpx.Client, image: Image) -> tuple[Any, Any]:
    """The catalog and the image's tags."""
    catalog = c.get("/v2/_catalog")
    tags = c.get(f"/v2/{image.name}/tags/list")
    assert catalog.status_code == 200 and tags.status_code == 200, (catalog.text, tags.text)
    return catalog.json(), tags.json()


def assert_gone(c: httpx.Client, location: str, root: Path) -> None:
    """The upload session at ``location`` is cancelled, none is left in storage."""
    assert_error(c.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert upload_ids(root) == set()


def assert_metrics_and_log(c: httpx.Client, server: WharfServer, at_least: int) -> None:
    """What an operator sees: the errors counted as STORAGE_FULL, and a log line."""
    metrics = c.get("/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('wharf_http_errors_total{code="STORAGE_FULL"}')
    )
    assert counted >= at_least, metrics
    assert "storage is full" in server.log()


@pytest.mark.expect_5xx(507)
def test_push_to_full_storage(
    small_fs: Path, make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    """Storage on the small filesystem, the database elsewhere: a chunked PATCH, a
    monolithic PUT and POST, the final PUT's move and a manifest PUT on a full disk."""
    root = small_fs / "registry"
    server = make_wharf(
        {
            "storage": {"filesystem": {"rootdirectory": str(root)}},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'meta' / 'wharf.db'}"},
        }
    )
    with server.client() as c:
        image = Image(c)
        before = listing(c, image)
        free = free_bytes(small_fs)
        big = os.urandom(free + 4 * MiB)  # more than there is room for
        big_digest = digest_of(big)

        # 1. chunked: a first PATCH fits, the second fills the disk
        location = start_upload(c, image.name)
        r = c.patch(location, content=big[: 8 * MiB], headers=OCTETS)
        assert r.status_code == 202, r.text
        assert free_bytes(small_fs) < free - 7 * MiB  # the chunk is on the disk
        assert_storage_full(c.patch(r.headers["location"], content=big[8 * MiB :], headers=OCTETS))
        assert free_bytes(small_fs) >= free - MARGIN  # both chunks' bytes are freed
        assert_gone(c, location, root)

        # 2. monolithic: POST, then one PUT with the whole blob
        location = start_upload(c, image.name)
        r = c.put(location, params={"digest": big_digest}, content=big, headers=OCTETS)
        assert_storage_full(r)
        assert free_bytes(small_fs) >= free - MARGIN
        assert_gone(c, location, root)

        # ... and in a single POST
        r = c.post(
            f"/v2/{image.name}/blobs/uploads/",
            params={"digest": big_digest},
            content=big,
            headers=OCTETS,
        )
        assert_storage_full(r)
        assert free_bytes(small_fs) >= free - MARGIN
        assert upload_ids(root) == set()

        assert_error(c.head(f"/v2/{image.name}/blobs/{big_digest}"), 404, "BLOB_UNKNOWN")
        assert not blob_file(root, big_digest).exists()
        image.assert_pulls(c)
        assert listing(c, image) == before

        # 3. the final PUT: every byte is in, but the blob's new directory cannot be made
        small = os.urandom(2 * MiB)
        location = start_upload(c, image.name)
        r = c.patch(location, content=small, headers=OCTETS)
        assert r.status_code == 202, r.text
        inodes = free_inodes(small_fs)
        fill_inodes(small_fs / "inodes")
        r = c.put(r.headers["location"], params={"digest": digest_of(small)})
        assert_storage_full(r)
        shutil.rmtree(small_fs / "inodes")
        assert free_inodes(small_fs) >= inodes + 3  # the upload's directory and two files
        assert free_bytes(small_fs) >= free - MARGIN
        assert_gone(c, location, root)
        assert_error(c.head(f"/v2/{image.name}/blobs/{digest_of(small)}"), 404, "BLOB_UNKNOWN")
        assert not blob_file(root, digest_of(small)).exists()

        # 4. a manifest PUT on a full disk: its blobs are in, its own bytes find no room
        layer = os.urandom(100_000)
        config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
        push_blob(c, image.name, layer)
        push_blob(c, image.name, config)
        manifest = json.dumps(image_manifest(config, [layer])).encode()
        fill_bytes(small_fs / "ballast")
        assert_storage_full(put_manifest(c, image.name, "v2", manifest, OCI_MANIFEST))
        assert_error(c.get(f"/v2/{image.name}/manifests/v2"), 404, "MANIFEST_UNKNOWN")
        r = c.get(f"/v2/{image.name}/manifests/{digest_of(manifest)}")
        assert_error(r, 404, "MANIFEST_UNKNOWN")
        assert not blob_file(root, digest_of(manifest)).exists()
        assert tmp_files(root) == []
        # nor is there room for a new upload session's info
        assert_storage_full(c.post(f"/v2/{image.name}/blobs/uploads/"))
        assert upload_ids(root) == set()
        # a full disk still serves what it holds
        image.assert_pulls(c)
        assert listing(c, image) == before
        assert_metrics_and_log(c, server, at_least=6)

        # room again: the pushes that failed now succeed
        (small_fs / "ballast").unlink()
        r = put_manifest(c, image.name, "v2", manifest, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{image.name}/manifests/v2").content == manifest
        location = start_upload(c, image.name)
        r = c.put(location, params={"digest": digest_of(small)}, content=small, headers=OCTETS)
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{image.name}/blobs/{digest_of(small)}").content == small
        image.assert_pulls(c)


@pytest.mark.expect_5xx(507)
def test_database_on_the_full_disk(small_fs: Path, make_wharf: Callable[..., WharfServer]) -> None:
    """Storage and the SQLite database (its default place, in the storage's root
    directory) on the small filesystem: a metadata write that finds no room answers the
    same 507, not a 500 or a 503, and the database works again once there is room."""
    root = small_fs / "registry"
    server = make_wharf({"storage": {"filesystem": {"rootdirectory": str(root)}}})
    assert (root / "wharf.db").exists()
    with server.client() as c:
        image = Image(c)
        before = listing(c, image)
        free = free_bytes(small_fs)
        big = os.urandom(free + 4 * MiB)

        # a blob bigger than the free space: the same as with the database elsewhere
        location = start_upload(c, image.name)
        r = c.put(location, params={"digest": digest_of(big)}, content=big, headers=OCTETS)
        assert_storage_full(r)
        assert free_bytes(small_fs) >= free - MARGIN
        assert_gone(c, location, root)
        image.assert_pulls(c)
        assert listing(c, image) == before

        # an upload whose bytes are all in, then the disk fills up
        small = os.urandom(MiB)
        location = start_upload(c, image.name)
        r = c.patch(location, content=small, headers=OCTETS)
        assert r.status_code == 202, r.text
        fill_bytes(small_fs / "ballast")

        # metadata writes find no room: finishing the upload (its pin, or its link), a
        # mount from another repository, a new tag on a stored manifest
        assert_storage_full(c.put(r.headers["location"], params={"digest": digest_of(small)}))
        assert_gone(c, location, root)
        assert free_bytes(small_fs) >= MiB  # the upload's bytes are freed...
        fill_bytes(small_fs / "ballast2")  # ... and taken again
        other = unique_name("full")
        mount = c.post(
            f"/v2/{other}/blobs/uploads/",
            params={"mount": digest_of(image.layer), "from": image.name},
        )
        assert_storage_full(mount)
        assert_storage_full(put_manifest(c, image.name, "v2", image.manifest, OCI_MANIFEST))

        assert_error(c.head(f"/v2/{image.name}/blobs/{digest_of(small)}"), 404, "BLOB_UNKNOWN")
        assert_error(c.head(f"/v2/{other}/blobs/{digest_of(image.layer)}"), 404, "BLOB_UNKNOWN")
        assert_error(c.get(f"/v2/{image.name}/manifests/v2"), 404, "MANIFEST_UNKNOWN")
        image.assert_pulls(c)
        assert listing(c, image) == before
        assert_metrics_and_log(c, server, at_least=4)
        assert "metadata database" in server.log()

        # room again: the database takes writes again
        (small_fs / "ballast").unlink()
        (small_fs / "ballast2").unlink()
        mount = c.post(
            f"/v2/{other}/blobs/uploads/",
            params={"mount": digest_of(image.layer), "from": image.name},
        )
        assert mount.status_code == 201, mount.text
        r = put_manifest(c, image.name, "v2", image.manifest, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        push_blob(c, image.name, small)
        assert c.get(f"/v2/{image.name}/blobs/{digest_of(small)}").content == small
        assert c.head(f"/v2/{other}/blobs/{digest_of(image.layer)}").status_code == 200
        assert sorted(listing(c, image)[1]["tags"]) == ["v1", "v2"]
        image.assert_pulls(c)


@pytest.mark.expect_5xx(507)
def test_pulls_when_the_database_disk_is_full(
    small_fs: Path, make_wharf: Callable[..., WharfServer]
) -> None:
    """With the SQLite database on the full disk, pulls of what is stored keep working,
    also when a blob's pin is due for a refresh."""
    root = small_fs / "registry"
    server = make_wharf(
        {"storage": {"filesystem": {"rootdirectory": str(root)}}, "gc": {"pinrefresh": "1s"}}
    )
    with server.client() as c:
        image = Image(c)
        fill_bytes(small_fs / "ballast")
        assert_storage_full(put_manifest(c, image.name, "v2", image.manifest, OCI_MANIFEST))
        time.sleep(1.5)  # every pin of the image is older than gc.pinrefresh now
        image.assert_pulls(c)
        r = c.head(f"/v2/{image.name}/blobs/{digest_of(image.layer)}")
        assert r.status_code == 200, r.text
