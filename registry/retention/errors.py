"""The retention feature's errors, in the OCI format (one class per code)."""

from __future__ import annotations

from registry.errors import NameUnknown, RegistryError


class RetentionRuleInvalid(RegistryError):
    """Rules or a run request that cannot be used (HTTP 400); ``detail`` names every
    field's problem."""

    code, status, default_message = "RETENTION_RULE_INVALID", 400, "invalid retention rules"


class RetentionRuleUnknown(RegistryError):
    """No retention rule with that id in the project (HTTP 404)."""

    code, status, default_message = "RETENTION_RULE_UNKNOWN", 404, "retention rule unknown"


class RetentionRunning(RegistryError):
    """A retention run of the project is going on already, here or on another node (409)."""

    code, status, default_message = "RETENTION_RUNNING", 409, "a retention run is going on"


class RetentionRunUnknown(RegistryError):
    """No retention run with that id in the project (HTTP 404)."""

    code, status, default_message = "RETENTION_RUN_UNKNOWN", 404, "retention run unknown"


class ProjectUnknown(NameUnknown):
    """No project of that name (NAME_UNKNOWN, HTTP 404)."""

    default_message = "project unknown"
