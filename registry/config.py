"""The one typed settings object, read from a YAML file in the reference registry's format.

Keys follow the reference registry's ``config.yml`` where it has one (``http.addr``,
``storage.filesystem.rootdirectory``, ``storage.delete.enabled``, ``log.level`` ...).
Environment variables ``REGISTRY_<SECTION>_<KEY>`` override the file, as in the
reference: ``REGISTRY_HTTP_ADDR=0.0.0.0:5000``, ``REGISTRY_STORAGE_DELETE_ENABLED=false``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from registry.durations import parse_duration

ENV_PREFIX = "REGISTRY_"


class ConfigError(Exception):
    """Raised for a configuration file or environment that cannot be used."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class AccessLogSettings(_Section):
    disabled: bool = False


class LogSettings(_Section):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    formatter: Literal["json", "text", "logstash"] = "json"
    accesslog: AccessLogSettings = AccessLogSettings()


class FilesystemSettings(_Section):
    rootdirectory: str = "./data"


class DeleteSettings(_Section):
    enabled: bool = True


class UploadPurgingSettings(_Section):
    enabled: bool = True
    age: str = "168h"
    interval: str = "24h"
    dryrun: bool = False

    @field_validator("age", "interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> str:
        parse_duration(value)
        return str(value)

    @property
    def age_seconds(self) -> float:
        return parse_duration(self.age)

    @property
    def interval_seconds(self) -> float:
        return max(parse_duration(self.interval), 1.0)


class MaintenanceSettings(_Section):
    uploadpurging: UploadPurgingSettings = UploadPurgingSettings()
    readonly: dict[str, bool] = Field(default_factory=lambda: {"enabled": False})


class StorageSettings(_Section):
    filesystem: FilesystemSettings | None = None
    inmemory: dict[str, Any] | None = None
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()

    @model_validator(mode="after")
    def _one_driver(self) -> StorageSettings:
        drivers = [d for d in ("filesystem", "inmemory") if getattr(self, d) is not None]
        if len(drivers) > 1:
            raise ValueError(f"configure one storage driver, not {', '.join(drivers)}")
        if not drivers:
            self.filesystem = FilesystemSettings()
        return self

    @property
    def driver(self) -> str:
        return "inmemory" if self.inmemory is not None else "filesystem"


class TLSSettings(_Section):
    certificate: str = ""
    key: str = ""


class HTTPSettings(_Section):
    addr: str = "127.0.0.1:5000"
    host: str = ""
    prefix: str = ""
    tls: TLSSettings = TLSSettings()
    workers: int = 0  # 0: one per CPU, at most 4

    @property
    def worker_count(self) -> int:
        """Worker processes to run: ``workers``, or one per CPU (at most 4) when 0."""
        if self.workers > 0:
            return self.workers
        return max(1, min(os.cpu_count() or 1, 4))

    headers: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def bind(self) -> tuple[str, int]:
        host, _, port = self.addr.rpartition(":")
        try:
            return (host.strip("[]") or "0.0.0.0", int(port))
        except ValueError:
            raise ConfigError(f"http.addr must be host:port, got {self.addr!r}") from None


class DatabaseSettings(_Section):
    url: str = ""
    poolsize: int = 10
    echo: bool = False


class ValidationSettings(_Section):
    manifestmaxsize: int = 4 * 1024 * 1024


class HtpasswdSettings(_Section):
    """``auth.htpasswd``: Basic auth against an htpasswd file (bcrypt)."""

    realm: str = "wharf"
    path: str


class TokenSettings(_Section):
    """``auth.token``: bearer tokens from a token service (the reference's keys)."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: str = ""
    jwks: str = ""
    autoredirect: bool = False


class TokenServerSettings(_Section):
    """``auth.tokenserver`` (Wharf's own): the built-in token service at ``auth.token.realm``.

    It signs with ``key``; ``certificate`` is the key's certificate chain (leaf first),
    sent as ``x5c``. Users come from ``auth.htpasswd``.
    """

    enabled: bool = True
    key: str
    certificate: str
    expiration: str = "5m"
    refreshexpiration: str = "720h"

    @field_validator("expiration", "refreshexpiration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> str:
        parse_duration(value)
        return str(value)


class SubjectSettings(_Section):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class PolicyRuleSettings(_Section):
    """One access rule: ``actions`` on ``repository`` globs for the named subjects."""

    repository: str | list[str]
    actions: list[Literal["pull", "push", "delete", "*"]]
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    authenticated: bool = False
    anonymous: bool = False

    @property
    def repositories(self) -> list[str]:
        return [self.repository] if isinstance(self.repository, str) else self.repository


class PolicySettings(_Section):
    """``auth.policy``: who may do what (without it, any authenticated user may do all)."""

    admins: SubjectSettings = SubjectSettings()
    catalog: SubjectSettings = SubjectSettings()
    groups: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[PolicyRuleSettings] = Field(default_factory=list)


class AuthSettings(BaseModel):
    """``auth``: none (the default, open), ``htpasswd`` (Basic) or ``token`` (Bearer)."""

    # unknown methods (silly, ldap ...) must not leave the registry silently open
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    tokenserver: TokenServerSettings | None = None
    policy: PolicySettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        if self.tokenserver is not None and self.tokenserver.enabled and self.token is None:
            raise ValueError("auth.tokenserver needs auth.token (realm, service, issuer)")
        if self.token is not None and not (
            self.token.rootcertbundle or self.token.jwks or self.tokenserver
        ):
            raise ValueError("auth.token needs rootcertbundle or jwks (or auth.tokenserver)")
        return self

    @property
    def mode(self) -> Literal["none", "htpasswd", "token"]:
        """How the registry checks callers: bearer tokens win over Basic auth (then
        ``auth.htpasswd`` only gives the built-in token service its users)."""
        if self.token is not None:
            return "token"
        if self.htpasswd is not None:
            return "htpasswd"
        return "none"


class Settings(_Section):
    """Everything the registry is configured with."""

    version: str = "0.1"
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    http: HTTPSettings = HTTPSettings()
    database: DatabaseSettings = DatabaseSettings()
    validation: ValidationSettings = ValidationSettings()
    auth: AuthSettings = AuthSettings()

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
        raise ConfigError(f"invalid configuration: {e}") from None
