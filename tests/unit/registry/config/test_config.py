"""Settings: the reference registry's keys, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import ConfigError, load_settings


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings(None, env={})
    assert s.http.addr == "127.0.0.1:5000"
    assert s.storage.driver == "filesystem"
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == "./data"
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.database_url.endswith("/data/wharf.db")
    assert s.storage.delete.enabled


def test_reference_registry_file_is_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        """
version: 0.1
log:
  level: debug
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: false
  cache:
    blobdescriptor: inmemory
http:
  addr: :5001
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
"""
    )
    s = load_settings(cfg, env={})
    assert s.log.level == "debug"
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == "/var/lib/registry"
    assert not s.storage.delete.enabled
    assert s.http.bind == ("0.0.0.0", 5001)
    assert s.http.tls.certificate == "/certs/domain.crt"
    assert s.http.headers == {"X-Content-Type-Options": ["nosniff"]}


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("http:\n  addr: 127.0.0.1:5000\n")
    env = {
        "REGISTRY_HTTP_ADDR": "0.0.0.0:6000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/wharf",
        "REGISTRY_DATABASE_URL": "postgresql+asyncpg://db/wharf",
        "UNRELATED": "x",
    }
    s = load_settings(cfg, env=env)
    assert s.http.addr == "0.0.0.0:6000"
    assert s.storage.delete.enabled is False
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == "/srv/wharf"
    assert s.database_url == "postgresql+asyncpg://db/wharf"


@pytest.mark.parametrize(
    "text, message",
    [
        ("http: [1, 2]", "invalid configuration"),
        ("log:\n  level: chatty\n", "invalid configuration"),
        ("storage:\n  filesystem: {}\n  inmemory: {}\n", "one storage driver"),
        ("http: {addr: x\n", "not valid YAML"),
        ("- a list", "must be a mapping"),
    ],
)
def test_bad_config_gives_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings("/nonexistent/config.yml", env={})


def test_durations() -> None:
    from registry.durations import parse_duration

    assert parse_duration("168h") == 168 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("10s") == 10
    assert parse_duration("250ms") == 0.25
    assert parse_duration(30) == 30
    for bad in ["", "10x", "h", "1h-"]:
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ConfigError, match="invalid configuration"):
        load_settings(None, env={"REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "soon"})


def test_duration_settings_are_seconds_parsed_once_and_print_as_written(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("gc:\n  grace: 1h30m\n  untaggedage: 45m\nhttp:\n  timeouts:\n    idle: 90\n")
    settings = load_settings(str(cfg), env={"REGISTRY_NOTIFICATIONS_RETENTION": "2h"})
    assert settings.gc.grace == 5400.0 and settings.gc.untaggedage == 2700.0
    assert settings.http.timeouts.idle == 90.0
    assert settings.notifications.retention == 7200.0
    assert settings.storage.maintenance.uploadpurging.age == 168 * 3600  # a default
    dumped = settings.model_dump(mode="json")
    assert dumped["gc"]["grace"] == "1h30m" and dumped["gc"]["untaggedage"] == "45m"
    assert dumped["http"]["timeouts"]["idle"] == "90"
    assert dumped["storage"]["maintenance"]["uploadpurging"]["age"] == "168h"
    assert load_settings(None, env={}).gc.untaggedage is None  # empty: none
    assert load_settings(None, env={}).model_dump()["gc"]["untaggedage"] == ""
    for bad in ("soon", "[1, 2]", "true"):
        cfg.write_text(f"gc:\n  grace: {bad}\n")
        with pytest.raises(ConfigError, match=r"gc\.grace"):
            load_settings(str(cfg), env={})
