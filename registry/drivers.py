"""The storage driver the settings name (filesystem, S3 or in-memory): for the app
factory and every command that reads or writes stored bytes."""

from __future__ import annotations

import os

from registry.config import Settings
from storage.driver import StorageDriver
from storage.filesystem import FilesystemDriver
from storage.memory import InMemoryDriver


def make_driver(settings: Settings) -> StorageDriver:
    """The storage driver the settings name."""
    if settings.storage.driver == "inmemory":
        return InMemoryDriver()
    if settings.storage.s3 is not None:
        from storage.s3 import S3Driver, S3Options  # boto3 is loaded only when used

        s3 = settings.storage.s3
        return S3Driver(
            S3Options(
                bucket=s3.bucket,
                region=s3.region,
                regionendpoint=s3.regionendpoint,
                accesskey=s3.accesskey,
                secretkey=s3.secretkey,
                rootdirectory=s3.rootdirectory,
                chunksize=s3.chunksize,
                secure=s3.secure,
                v4auth=s3.v4auth,
                forcepathstyle=s3.forcepathstyle,
                redirect=not settings.storage.redirect.disable,
                redirect_expiry=settings.storage.redirect.expiry_seconds,
                threads=s3.threads,
                multipart_copy_threshold=s3.multipartcopythresholdsize,
                copy_part_size=s3.multipartcopychunksize,
            )
        )
    assert settings.storage.filesystem is not None
    root = settings.storage.filesystem.rootdirectory
    os.makedirs(root, exist_ok=True)
    return FilesystemDriver(root)
