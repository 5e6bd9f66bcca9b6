"""The audit log's error: filters of ``/api/audit`` that cannot be used."""

from __future__ import annotations

from registry.errors import RegistryError


class AuditQueryInvalid(RegistryError):
    """A query parameter of ``/api/audit`` that cannot be used (HTTP 400); ``detail``
    names every parameter's problem."""

    code, status, default_message = "AUDIT_QUERY_INVALID", 400, "invalid audit query"
