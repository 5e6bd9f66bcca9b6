"""The S3 client of the S3 driver: boto3 and botocore are imported here and nowhere else.

boto3 blocks, so every call runs in one bounded thread pool owned by the driver; the
event loop only awaits futures. :class:`S3Calls` holds the single-object calls (HEAD, GET,
ranged GET, batched DELETE, abort of a multipart upload, listing) and turns S3's own
failures into :class:`StorageUnavailable`; :func:`make_client` builds the boto3 client
(timeouts, retries). See docs/storage.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.driver import PathNotFound, StorageError, StorageUnavailable, check_path

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from storage.s3 import S3Options

DELETE_BATCH = 1000
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}

T = TypeVar("T")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise S3's own failures (an error answer, no answer) as :class:`StorageUnavailable`."""
    try:
        yield
    except StorageError:
        raise
    except ClientError as exc:
        raise StorageUnavailable(f"object store error: {exc}") from exc
    except Exception as exc:  # connection refused, timeouts: botocore's and urllib3's errors
        if type(exc).__module__.startswith(("botocore", "urllib3")):
            raise StorageUnavailable(f"object store unavailable: {exc}") from exc
        raise


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in _NOT_FOUND


class S3Calls:
    """Paths as keys in one bucket, and the calls on single objects (run in the pool)."""

    options: S3Options
    bucket: str
    root: str
    _pool: ThreadPoolExecutor
    _client: S3Client

    def key(self, path: str) -> str:
        path = check_path(path)
        return f"{self.root}/{path}" if self.root else path

    def _rel(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        with translated():
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))

    def _head(self, key: str) -> tuple[int, float] | None:
        try:
            r = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return r["ContentLength"], r["LastModified"].timestamp()

    def _get(self, key: str) -> bytes | None:
        got = self._get_object(key)
        return None if got is None else got[0]

    def _get_object(self, key: str) -> tuple[bytes, float] | None:
        """The bytes of ``key`` and its modification time, or None if it is missing."""
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        with r["Body"] as body:
            return body.read(), r["LastModified"].timestamp()

    def _open_get(self, kw: dict[str, Any]) -> Any:
        """GET's body, or None when the range starts at or past the end."""
        try:
            return self._client.get_object(**kw)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise PathNotFound(self._rel(kw["Key"])) from None
            if _code(exc) == "InvalidRange":
                return None
            raise

    def _delete_keys(self, keys: Sequence[str]) -> list[str]:
        failed: list[str] = []
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            r = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            failed += [e["Key"] for e in r.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        return failed

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not _missing(exc):
                raise

    def _list_pages(self, prefix: str, delimiter: str = "") -> Any:
        paginator = self._client.get_paginator("list_objects_v2")
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kw["Delimiter"] = delimiter
        return iter(paginator.paginate(**kw))


def make_client(o: S3Options) -> S3Client:
    endpoint = o.regionendpoint or None
    if endpoint and "://" not in endpoint:
        endpoint = f"{'https' if o.secure else 'http'}://{endpoint}"
    config = Config(
        region_name=o.region or None,
        signature_version="s3v4" if o.v4auth else "s3",
        s3={"addressing_style": "path" if o.forcepathstyle else "auto"},
        max_pool_connections=max(o.threads, 10),
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=o.accesskey or None,
        aws_secret_access_key=o.secretkey or None,
        region_name=o.region or None,
    )
    client: S3Client = session.client("s3", endpoint_url=endpoint, use_ssl=o.secure, config=config)
    return client
