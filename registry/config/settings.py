"""The whole ``Settings``, its small top-level sections, and loading (file, environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from registry.config.audit import AuditSettings
from registry.config.auth import AuthSettings
from registry.config.base import ConfigError, _Section
from registry.config.gc import GCSettings
from registry.config.http import HTTPSettings
from registry.config.notifications import NotificationsSettings
from registry.config.projects import ProjectsSettings
from registry.config.replication import (
    MirrorEvictionSettings,
    MirrorSettings,
    ProxySettings,
    ReplicationSettings,
)
from registry.config.scrub import ScrubSettings
from registry.config.storage import StorageSettings

ENV_PREFIX = "REGISTRY_"


class AccessLogSettings(_Section):
    disabled: bool = False


class LogSettings(_Section):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    formatter: Literal["json", "text", "logstash"] = "json"
    accesslog: AccessLogSettings = AccessLogSettings()


class DatabaseSettings(_Section):
    url: str = ""
    poolsize: int = 10
    echo: bool = False


class ValidationSettings(_Section):
    manifestmaxsize: int = 4 * 1024 * 1024


class Settings(_Section):
    """Everything the registry is configured with."""

    version: str = "0.1"
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    http: HTTPSettings = HTTPSettings()
    database: DatabaseSettings = DatabaseSettings()
    validation: ValidationSettings = ValidationSettings()
    auth: AuthSettings = AuthSettings()
    replication: ReplicationSettings = ReplicationSettings()
    proxy: ProxySettings = ProxySettings()
    mirrors: list[MirrorSettings] = Field(default_factory=list)
    mirroreviction: MirrorEvictionSettings = MirrorEvictionSettings()
    notifications: NotificationsSettings = NotificationsSettings()
    gc: GCSettings = GCSettings()
    projects: ProjectsSettings = ProjectsSettings()
    audit: AuditSettings = AuditSettings()
    scrub: ScrubSettings = ScrubSettings()  # the integrity scrub (#18)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str:
        return str(value)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; SQLite beside the filesystem storage by default."""
        if self.database.url:
            return self.database.url
        root = self.storage.filesystem.rootdirectory if self.storage.filesystem else "./data"
        return f"sqlite+aiosqlite:///{Path(root).resolve() / 'wharf.db'}"


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def apply_env(tree: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``REGISTRY_A_B_C=value`` overrides to ``tree`` (values parsed as YAML)."""
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("_") if k]
        if not keys:
            continue
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            value = raw
        _set_path(tree, keys, value)
    return tree


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read ``path`` (if given), apply environment overrides, validate.

    Raises :class:`ConfigError` with a readable message on any problem.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping")
        tree = loaded or {}
    apply_env(tree, os.environ if env is None else env)
    try:
        return Settings.model_validate(tree)
    except ValidationError as e:
        problems = [
            (".".join(str(part) for part in error["loc"]) or "(top)", error["msg"])
            for error in e.errors(include_url=False)
        ]
        raise ConfigError(f"invalid configuration: {e}", problems) from None
