"""The one typed settings object, read from a YAML file in the reference registry's format.

Keys follow the reference registry's ``config.yml`` where it has one (``http.addr``,
``storage.filesystem.rootdirectory``, ``storage.delete.enabled``, ``log.level`` ...).
Environment variables ``REGISTRY_<SECTION>_<KEY>`` override the file, as in the
reference: ``REGISTRY_HTTP_ADDR=0.0.0.0:5000``, ``REGISTRY_STORAGE_DELETE_ENABLED=false``.

The settings live in a module per section (``base``, ``http``, ``storage``, ``auth``,
``replication``, ``notifications``, ``gc``, ``settings``); every name is imported from here.
"""

from registry.config.audit import AuditSettings
from registry.config.auth import (
    AuthSettings,
    HtpasswdSettings,
    LdapSettings,
    LocalSettings,
    PolicyRuleSettings,
    PolicySettings,
    SubjectSettings,
    ThrottleInFlightSettings,
    ThrottleSettings,
    TokenServerSettings,
    TokenSettings,
)
from registry.config.base import ConfigError, Duration, host_port
from registry.config.gc import GCSettings
from registry.config.http import (
    DebugPrometheusSettings,
    DebugSettings,
    HTTPSettings,
    HTTPTimeoutSettings,
    TLSSettings,
)
from registry.config.notifications import (
    EVENTS_V1,
    NotificationEndpointSettings,
    NotificationEventsSettings,
    NotificationIgnoreSettings,
    NotificationsSettings,
)
from registry.config.projects import PROJECT_NAME_RE, ProjectsSettings
from registry.config.replication import (
    MirrorEvictionSettings,
    MirrorSettings,
    ProxySettings,
    RemoteSettings,
    ReplicationRuleSettings,
    ReplicationSettings,
)
from registry.config.scrub import ScrubSettings, parse_rate
from registry.config.settings import (
    ENV_PREFIX,
    AccessLogSettings,
    DatabaseSettings,
    LogSettings,
    Settings,
    ValidationSettings,
    apply_env,
    load_settings,
)
from registry.config.storage import (
    DeleteSettings,
    FilesystemSettings,
    MaintenanceSettings,
    RedirectSettings,
    S3Settings,
    StorageSettings,
    UploadLimitsSettings,
    UploadPurgingSettings,
)

__all__ = [
    "ENV_PREFIX",
    "EVENTS_V1",
    "PROJECT_NAME_RE",
    "AccessLogSettings",
    "AuditSettings",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "DebugPrometheusSettings",
    "DebugSettings",
    "DeleteSettings",
    "Duration",
    "FilesystemSettings",
    "GCSettings",
    "HTTPSettings",
    "HTTPTimeoutSettings",
    "HtpasswdSettings",
    "LdapSettings",
    "LocalSettings",
    "LogSettings",
    "MaintenanceSettings",
    "MirrorEvictionSettings",
    "MirrorSettings",
    "NotificationEndpointSettings",
    "NotificationEventsSettings",
    "NotificationIgnoreSettings",
    "NotificationsSettings",
    "PolicyRuleSettings",
    "PolicySettings",
    "ProjectsSettings",
    "ProxySettings",
    "RedirectSettings",
    "RemoteSettings",
    "ReplicationRuleSettings",
    "ReplicationSettings",
    "S3Settings",
    "ScrubSettings",
    "Settings",
    "StorageSettings",
    "SubjectSettings",
    "TLSSettings",
    "ThrottleInFlightSettings",
    "ThrottleSettings",
    "TokenServerSettings",
    "TokenSettings",
    "UploadLimitsSettings",
    "UploadPurgingSettings",
    "ValidationSettings",
    "apply_env",
    "host_port",
    "load_settings",
    "parse_rate",
]
