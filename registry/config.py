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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from registry.durations import parse_duration


def _checked_duration(value: Any) -> str:
    parse_duration(value)
    return str(value)


# A duration setting (``30s``, ``24h``, a number of seconds), checked when the config
# loads and kept as written.
Duration = Annotated[str, BeforeValidator(_checked_duration)]

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
    expiry: Duration = "20m"

    @property
    def expiry_seconds(self) -> float:
        return max(parse_duration(self.expiry), 1.0)


class DeleteSettings(_Section):
    enabled: bool = True


class UploadPurgingSettings(_Section):
    enabled: bool = True
    age: Duration = "168h"
    interval: Duration = "24h"
    dryrun: bool = False

    @property
    def age_seconds(self) -> float:
        return parse_duration(self.age)

    @property
    def interval_seconds(self) -> float:
        return max(parse_duration(self.interval), 1.0)


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


class TLSSettings(_Section):
    certificate: str = ""
    key: str = ""


def host_port(addr: str, key: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:5000``, ``:5000`` for every address) as (host, port)."""
    host, _, port = addr.rpartition(":")
    try:
        return (host.strip("[]") or "0.0.0.0", int(port))
    except ValueError:
        raise ConfigError(f"{key} must be host:port, got {addr!r}") from None


class DebugPrometheusSettings(_Section):
    enabled: bool = True
    path: str = "/metrics"


class DebugSettings(_Section):
    """``http.debug``: as the reference registry, a second address (keep it private)
    serving the Prometheus metrics without credentials."""

    addr: str = ""  # "": no debug listener
    prometheus: DebugPrometheusSettings = DebugPrometheusSettings()

    @property
    def bind(self) -> tuple[str, int] | None:
        return host_port(self.addr, "http.debug.addr") if self.addr else None


class HTTPTimeoutSettings(_Section):
    """``http.timeouts`` (Wharf's; registry/httplimits.py): how long a client may hold a
    connection without progress. ``0s`` turns one off (keep-alive ``0s``: close after each
    response)."""

    header: Duration = "30s"  # from a request's first byte (or the connect) to its last header
    idle: Duration = "60s"  # longest gap in a request body, or in a client taking a response
    keepalive: Duration = "75s"  # an idle connection between requests

    @property
    def header_seconds(self) -> float:
        return max(parse_duration(self.header), 0.0)

    @property
    def idle_seconds(self) -> float:
        return max(parse_duration(self.idle), 0.0)

    @property
    def keepalive_seconds(self) -> float:
        return max(parse_duration(self.keepalive), 0.0)


class HTTPSettings(_Section):
    addr: str = "127.0.0.1:5000"
    host: str = ""
    prefix: str = ""
    tls: TLSSettings = TLSSettings()
    debug: DebugSettings = DebugSettings()
    workers: int = 0  # 0: one per CPU, at most 4
    timeouts: HTTPTimeoutSettings = HTTPTimeoutSettings()
    # open connections per worker; requests beyond get 429 TOOMANYREQUESTS (0: no cap)
    maxconnections: int = Field(default=1000, ge=0)

    @property
    def worker_count(self) -> int:
        """Worker processes to run: ``workers``, or one per CPU (at most 4) when 0."""
        if self.workers > 0:
            return self.workers
        return max(1, min(os.cpu_count() or 1, 4))

    headers: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def bind(self) -> tuple[str, int]:
        return host_port(self.addr, "http.addr")


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
    expiration: Duration = "5m"
    refreshexpiration: Duration = "720h"


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


class LdapSettings(_Section):
    """``auth.ldap`` (Wharf's own): users and groups from an LDAP directory (ldap3).

    Either ``userdn`` (a template such as ``uid={user},ou=people,dc=example,dc=org``:
    bind as the user directly) or a search under ``userbase`` for
    ``(&userfilter(userattr=NAME))`` with the service account ``binddn``, then a bind
    as the DN found. Groups (by ``cn``) come from ``groupkinds``: ``groupOfNames``
    (``member=DN`` under ``groupbase``), ``memberOf`` (the user's attribute) and
    ``posixGroup`` (``memberUid=NAME``). Every ``refresh`` the groups of the users
    seen lately are read again (needs ``binddn``).
    """

    url: str | list[str]
    starttls: bool = False
    cacert: str = ""
    binddn: str = ""
    bindpassword: str = Field(default="", exclude=True)  # never printed by `wharf config`
    userdn: str = ""
    userbase: str = ""
    userfilter: str = "(objectClass=*)"
    userattr: str = "uid"
    groupbase: str = ""
    groupfilter: str = ""
    groupkinds: list[Literal["groupOfNames", "memberOf", "posixGroup"]] = ["groupOfNames"]
    timeout: Duration = "5s"
    poolsize: int = Field(default=4, ge=1, le=64)
    refresh: Duration = "5m"
    realm: str = "wharf"

    @model_validator(mode="after")
    def _how_to_find_users(self) -> LdapSettings:
        if not self.userdn and not (self.userbase and self.binddn):
            raise ValueError("auth.ldap needs userdn, or userbase with binddn")
        if self.userdn and "{user}" not in self.userdn:
            raise ValueError("auth.ldap.userdn must contain {user}")
        if not self.urls:
            raise ValueError("auth.ldap.url is empty")
        for url in self.urls:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ValueError(f"auth.ldap.url must be ldap://... or ldaps://..., not {url!r}")
        return self

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @property
    def timeout_seconds(self) -> float:
        return max(parse_duration(self.timeout), 0.1)

    @property
    def refresh_seconds(self) -> float:
        return max(parse_duration(self.refresh), 1.0)


class ThrottleInFlightSettings(_Section):
    """``auth.throttle.maxinflight``: password checks in flight at once, per worker."""

    user: int = Field(default=4, ge=1)
    address: int = Field(default=8, ge=1)


class ThrottleSettings(_Section):
    """``auth.throttle`` (Wharf's own): after ``free`` failures within ``window``, a
    failure's answer waits ``base``, doubling per failure up to ``cap``; an attempt
    beyond ``maxinflight`` is refused with 429 (see ``auth/throttle.py``)."""

    free: int = Field(default=3, ge=0)
    base: Duration = "250ms"
    cap: Duration = "4s"
    window: Duration = "15m"
    maxinflight: ThrottleInFlightSettings = ThrottleInFlightSettings()

    @property
    def base_seconds(self) -> float:
        return max(parse_duration(self.base), 0.0)

    @property
    def cap_seconds(self) -> float:
        return max(parse_duration(self.cap), 0.0)

    @property
    def window_seconds(self) -> float:
        return max(parse_duration(self.window), 0.0)


class AuthSettings(BaseModel):
    """``auth``: none (the default, open), ``htpasswd`` (Basic) or ``token`` (Bearer)."""

    # unknown methods (silly ...) must not leave the registry silently open
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    tokenserver: TokenServerSettings | None = None
    policy: PolicySettings | None = None
    ldap: LdapSettings | None = None
    throttle: ThrottleSettings = ThrottleSettings()

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
        if self.htpasswd is not None or self.ldap is not None:
            return "htpasswd"  # Basic auth: htpasswd and/or LDAP users (and robots)
        return "none"


class RemoteSettings(_Section):
    """A remote registry: URL, credentials (Basic, or the user of a token service), TLS."""

    url: str
    username: str = ""
    password: str = ""
    insecure: bool = False  # do not verify the TLS certificate
    cacert: str = ""  # CA bundle (PEM) to verify it with


class ReplicationRuleSettings(_Section):
    """``replication.rules[]``: what to copy between this registry and a remote one."""

    name: str
    remote: RemoteSettings
    direction: Literal["push", "pull"] = "push"
    repositories: list[str] = Field(default_factory=lambda: ["*"])  # include globs
    exclude: list[str] = Field(default_factory=list)  # repository globs
    tags: list[str] = Field(default_factory=list)  # include: globs, or re:<regex>
    excludetags: list[str] = Field(default_factory=list)
    prefix: str = ""  # destination repository prefix
    schedule: str = ""  # cron expression (croniter); empty: on push / on demand only
    onpush: bool = False
    deletes: bool = False  # propagate tag deletes
    maxparallel: int = Field(default=4, ge=1, le=64)
    bandwidth: str = ""  # bytes per second: 10M, 512K, 1G; empty: unlimited
    retries: int = Field(default=3, ge=0)  # per blob, within a run
    chunksize: str = "16M"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"invalid cron schedule {value!r}")
        return value


class ReplicationSettings(_Section):
    """``replication``: rules, and how the replicator reaches this registry itself."""

    rules: list[ReplicationRuleSettings] = Field(default_factory=list)
    local: RemoteSettings | None = None  # default: http(s)://http.addr, no credentials
    enabled: bool = True  # run schedules and on-push triggers in `serve`

    @model_validator(mode="after")
    def _unique(self) -> ReplicationSettings:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("replication rule names must be unique")
        return self


class _UpstreamSettings(_Section):
    """What every pull-through upstream has."""

    remoteurl: str = ""
    username: str = ""
    password: str = ""
    ttl: Duration = "1h"  # re-check a cached tag with a HEAD after this long
    fetchlease: Duration = "30s"  # a blob fetch's lease; a dead fetcher's expires after this


class ProxySettings(_UpstreamSettings):
    """``proxy`` (as in the reference registry): mirror one upstream for the whole registry."""

    ttl: Duration = "168h"


class MirrorSettings(_UpstreamSettings):
    """``mirrors[]`` (Wharf's own): mirror an upstream under a repository prefix."""

    prefix: str
    remoteurl: str
    insecure: bool = False
    cacert: str = ""


class NotificationIgnoreSettings(_Section):
    """``notifications.endpoints[].ignore``: events an endpoint is not sent."""

    mediatypes: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)


EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"


class NotificationEndpointSettings(_Section):
    """One ``notifications.endpoints[]`` entry: the reference's keys, plus Wharf's
    ``mediatype``, ``format``, ``secret``, ``maxbatch``, ``maxattempts`` and ``maxage``."""

    name: str
    url: str
    disabled: bool = False
    headers: dict[str, list[str]] = Field(default_factory=dict)
    timeout: Duration = "1s"
    threshold: int = 10
    backoff: Duration = "1s"
    ignoredmediatypes: list[str] = Field(default_factory=list)
    ignore: NotificationIgnoreSettings = NotificationIgnoreSettings()
    mediatype: str = ""  # empty: notifications.mediatype
    format: Literal["envelope", "cloudevents", "cloudevents-batch"] = "envelope"
    secret: str = ""
    maxbatch: int = Field(default=100, ge=1, le=10_000)
    maxattempts: int = Field(default=0, ge=0)  # 0: no limit
    maxage: Duration = "168h"  # 0: no limit

    @field_validator("headers", mode="before")
    @classmethod
    def _header_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout) or 1.0

    @property
    def backoff_seconds(self) -> float:
        return parse_duration(self.backoff) or 1.0

    @property
    def maxage_seconds(self) -> float:
        return parse_duration(self.maxage)

    def ignores(self, action: str, media_type: str) -> bool:
        """True when an event with ``action`` and target ``media_type`` is not sent here."""
        types = {*self.ignoredmediatypes, *self.ignore.mediatypes}
        return action in self.ignore.actions or (bool(media_type) and media_type in types)


class NotificationEventsSettings(_Section):
    includereferences: bool = False


class NotificationsSettings(_Section):
    """``notifications``: where events are sent (see docs/events.md)."""

    events: NotificationEventsSettings = NotificationEventsSettings()
    endpoints: list[NotificationEndpointSettings] = Field(default_factory=list)
    mediatype: str = EVENTS_V1
    retention: Duration = "168h"  # how long delivered events stay listable in /api/events

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsSettings:
        names = [e.name for e in self.endpoints]
        if len(names) != len(set(names)):
            raise ValueError("notifications.endpoints[].name must be unique")
        return self

    @property
    def active(self) -> list[NotificationEndpointSettings]:
        return [e for e in self.endpoints if not e.disabled]


class GCSettings(_Section):
    """Online garbage collection (issue #7): ``schedule`` is an interval (``24h``) between
    runs or a 5-field cron expression (``0 3 * * *``, UTC), empty for none; one node runs
    each (a lease in the database)."""

    schedule: str = ""
    grace: Duration = "1h"
    deleteuntagged: bool = False
    untaggedage: str = ""  # with deleteuntagged: keep untagged manifests younger than this
    walk: bool = True  # also look for orphan files in storage
    # a blob HEAD/GET writes its pin at most this often; keep it well below the grace
    pinrefresh: Duration = "10s"

    @field_validator("untaggedage", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> str:
        if value not in (None, ""):
            parse_duration(value)
        return "" if value is None else str(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        from registry.schedules import parse_schedule

        parse_schedule(str(value))
        return str(value)


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
    notifications: NotificationsSettings = NotificationsSettings()
    gc: GCSettings = GCSettings()

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
