"""The scrub's errors (OCI format: ``{"errors": [{"code", "message", "detail"}]}``)."""

from __future__ import annotations

from registry.errors import RegistryError


class ScrubRunning(RegistryError):
    """A scrub run is going on already, here or on another node (HTTP 409)."""

    code, status, default_message = "SCRUB_RUNNING", 409, "a scrub is running"


class ScrubRunUnknown(RegistryError):
    """No scrub run with that id (HTTP 404)."""

    code, status, default_message = "SCRUB_RUN_UNKNOWN", 404, "scrub run unknown"


class ScrubInvalid(RegistryError):
    """Options of ``POST /api/scrub/runs`` that cannot be used (HTTP 400); ``detail``
    lists every problem by field."""

    code, status, default_message = "SCRUB_INVALID", 400, "invalid scrub options"
