"""``storage.s3`` and ``storage.redirect``: the reference registry's keys, checked early."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import ConfigError, load_settings
from registry.drivers import make_driver
from storage.s3 import S3Driver


def test_s3_section_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        """
version: 0.1
storage:
  s3:
    region: eu-west-1
    regionendpoint: http://127.0.0.1:7480
    bucket: registry
    accesskey: AK
    secretkey: SK
    rootdirectory: /wharf
    chunksize: 8388608
    secure: false
    v4auth: true
    forcepathstyle: true
    storageclass: STANDARD
  redirect:
    expiry: 90s
"""
    )
    s = load_settings(cfg, env={"REGISTRY_STORAGE_S3_BUCKET": "other"})
    assert s.storage.driver == "s3"
    assert s.storage.filesystem is None
    assert s.storage.s3 is not None and s.storage.s3.bucket == "other"
    assert not s.storage.redirect.disable and s.storage.redirect.expiry_seconds == 90
    driver = make_driver(s)
    assert isinstance(driver, S3Driver)
    try:
        assert driver.key("blobs/x") == "wharf/blobs/x"
        assert driver.chunksize == 8 * 1024 * 1024
        assert driver.options.redirect and driver.options.redirect_expiry == 90
        assert driver.options.region == "eu-west-1"
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REGISTRY_STORAGE_S3_REGION": "us-east-1"}, "bucket"),
        ({"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_S3_CHUNKSIZE": "1048576"}, "5 MiB"),
        (
            {"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"},
            "one storage driver",
        ),
        ({"REGISTRY_STORAGE_REDIRECT_EXPIRY": "soon"}, "duration"),
    ],
)
def test_bad_s3_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env=env)


def test_redirect_can_be_disabled() -> None:
    s = load_settings(
        None,
        env={"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_REDIRECT_DISABLE": "true"},
    )
    driver = make_driver(s)
    assert isinstance(driver, S3Driver)
    assert not driver.options.redirect
    driver.close()
