"""``storage``: the driver (filesystem, in-memory or S3), redirects, deletes, maintenance."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from registry.config.base import Duration, _Section, duration


class FilesystemSettings(_Section):
    rootdirectory: str = "./data"


class S3Settings(_Section):
    """``storage.s3``: the reference registry's keys, plus ``threads`` (boto3's pool)."""

    region: str = "us-east-1"
    regionendpoint: str = ""
    bucket: str
    accesskey: str = ""
    secretkey: str = ""
    rootdirectory: str = ""
    chunksize: int = 10 * 1024 * 1024
    secure: bool = True
    v4auth: bool = True
    forcepathstyle: bool = False
    multipartcopythresholdsize: int = 5 * 1024 * 1024 * 1024
    multipartcopychunksize: int = 1024 * 1024 * 1024
    threads: int = 16

    @field_validator("chunksize", "multipartcopychunksize")
    @classmethod
    def _part_size(cls, value: int) -> int:
        if value < 5 * 1024 * 1024:
            raise ValueError("must be at least 5242880 (5 MiB, S3's smallest part)")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not value:
            raise ValueError("storage.s3.bucket is required")
        return value


class RedirectSettings(_Section):
    """``storage.redirect``: blob GETs answer 307 to a presigned URL unless ``disable``
    (drivers without URLs, such as the filesystem, always serve the bytes)."""

    disable: bool = False
    expiry: Duration = duration("20m")

    @property
    def expiry_seconds(self) -> float:
        return max(self.expiry, 1.0)


class DeleteSettings(_Section):
    enabled: bool = True


class UploadPurgingSettings(_Section):
    enabled: bool = True
    age: Duration = duration("168h")
    interval: Duration = duration("24h")
    dryrun: bool = False

    @property
    def interval_seconds(self) -> float:
        return max(self.interval, 1.0)


class UploadLimitsSettings(_Section):
    """``storage.maintenance.uploadlimits`` (Wharf's own): upload sessions open at once
    (POSTs without a digest, not yet finished, cancelled or purged) per repository and
    per caller (user, or client address when anonymous); past one a POST gets 429. 0: no
    cap."""

    perrepository: int = Field(default=1000, ge=0)
    percaller: int = Field(default=100, ge=0)


class MaintenanceSettings(_Section):
    uploadpurging: UploadPurgingSettings = UploadPurgingSettings()
    uploadlimits: UploadLimitsSettings = UploadLimitsSettings()
    readonly: dict[str, bool] = Field(default_factory=lambda: {"enabled": False})


class StorageSettings(_Section):
    filesystem: FilesystemSettings | None = None
    inmemory: dict[str, Any] | None = None
    s3: S3Settings | None = None
    redirect: RedirectSettings = RedirectSettings()
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()

    @model_validator(mode="after")
    def _one_driver(self) -> StorageSettings:
        drivers = [d for d in ("filesystem", "inmemory", "s3") if getattr(self, d) is not None]
        if len(drivers) > 1:
            raise ValueError(f"configure one storage driver, not {', '.join(drivers)}")
        if not drivers:
            self.filesystem = FilesystemSettings()
        return self

    @property
    def driver(self) -> str:
        if self.s3 is not None:
            return "s3"
        return "inmemory" if self.inmemory is not None else "filesystem"
