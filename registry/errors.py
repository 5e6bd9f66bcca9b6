"""The OCI distribution error codes, one exception class per code.

Each error renders as the spec's body ``{"errors": [{"code", "message", "detail"}]}``
with its HTTP status; :class:`registry.middleware.errors.ErrorMiddleware` does the
rendering. The spec allows only its own codes in a JSON error body, so the few 4xx
errors without a spec code (a bad ``Range``, a path outside the API) answer with their
message as plain text instead.
"""

from __future__ import annotations

import errno
import json
import sqlite3
from typing import Any, ClassVar


class RegistryError(Exception):
    """Base class: an error a client is told about, with an OCI code and HTTP status."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"
    # False for codes the spec does not define: the body is then plain text.
    json_body: ClassVar[bool] = True

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail
        self.http_status = status or self.status
        self.headers = headers or {}

    @property
    def media_type(self) -> str:
        return "application/json" if self.json_body else "text/plain; charset=utf-8"

    def body(self) -> bytes:
        """The JSON error body of the OCI distribution spec (or the message as text)."""
        if not self.json_body:
            return f"{self.message}\n".encode()
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode()


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = (
        "DIGEST_INVALID",
        400,
        "provided digest did not match uploaded content",
    )


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = (
        "SIZE_INVALID",
        400,
        "provided length did not match content length",
    )


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class RangeInvalid(RegistryError):
    """A ``Range`` or ``Content-Range`` that cannot be satisfied (HTTP 416)."""

    code, status, default_message = (
        "RANGE_INVALID",
        416,
        "requested range not satisfiable",
    )
    json_body = False


class PayloadTooLarge(RegistryError):
    """A request body over a configured limit (HTTP 413)."""

    code, status, default_message = "SIZE_INVALID", 413, "payload too large"


class Unavailable(RegistryError):
    """A backend (database, storage) is unreachable (HTTP 503)."""

    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class StorageFull(RegistryError):
    """No space left for a write: blob storage, or the metadata database's disk (HTTP 507).

    The spec's closed list of codes binds 4xx JSON bodies; a 5xx keeps the body's shape
    with the reference registry's code for a server-side failure, UNKNOWN (which clients
    read as unknown whatever code a server invents): the 507 and the message say it.
    """

    code, status, default_message = "UNKNOWN", 507, "storage is full"
    # The access log's "error" and the wharf_http_errors{code} label (the body says UNKNOWN).
    label: ClassVar[str] = "STORAGE_FULL"
    _NO_SPACE: ClassVar[frozenset[int]] = frozenset({errno.ENOSPC, errno.EDQUOT})  # or quota
    _PG_DISK_FULL: ClassVar[str] = "53100"

    def __init__(self, full: str = "storage") -> None:
        super().__init__(
            f"storage is full: no space left for the registry's {full}; nothing of this "
            "request was kept (an upload in progress is cancelled): push again once space "
            "has been freed"
        )
        self.full = full

    @classmethod
    def of(cls, exc: BaseException) -> StorageFull | None:
        """The answer to ``exc`` if it, or an error that caused it, is a full disk: of the
        storage (``OSError`` ENOSPC or EDQUOT) or of the metadata database (SQLite's
        SQLITE_FULL, PostgreSQL's disk_full); else None."""
        pending, seen = [exc], set()
        while pending:
            e = pending.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            if isinstance(e, OSError) and e.errno in cls._NO_SPACE:
                return cls("storage")
            if isinstance(e, sqlite3.Error) and (
                getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(e)
            ):
                return cls("metadata database")
            if getattr(e, "sqlstate", None) == cls._PG_DISK_FULL:  # asyncpg, or via SQLAlchemy
                return cls("metadata database")
            if isinstance(e, BaseExceptionGroup):
                pending.extend(e.exceptions)
            for cause in (getattr(e, "orig", None), e.__cause__, e.__context__):
                if isinstance(cause, BaseException):
                    pending.append(cause)
        return None


ALL_ERRORS: tuple[type[RegistryError], ...] = (
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
)


class NotFound(RegistryError):
    """A path that is not part of the API (HTTP 404)."""

    code, status, default_message = "NOT_FOUND", 404, "not found"
    json_body = False


class InvalidParameter(RegistryError):
    """A query parameter of Wharf's own API (``/api/``) that cannot be used (HTTP 400)."""

    code, status, default_message = "INVALID_PARAMETER", 400, "invalid parameter"


class GCRunning(RegistryError):
    """A garbage collection run is going on already (HTTP 409)."""

    code, status, default_message = "GC_RUNNING", 409, "a garbage collection is running"


class GCRunUnknown(RegistryError):
    """No garbage collection run with that id (HTTP 404)."""

    code, status, default_message = "GC_RUN_UNKNOWN", 404, "garbage collection run unknown"


class ReplicationRuleInvalid(RegistryError):
    """A replication rule given to ``/api/replication/rules`` that cannot be used (HTTP 400)."""

    code, status, default_message = "RULE_INVALID", 400, "invalid replication rule"


class ReplicationRuleUnknown(RegistryError):
    """No replication rule of that name (HTTP 404)."""

    code, status, default_message = "RULE_UNKNOWN", 404, "replication rule unknown"


class ReplicationRuleExists(RegistryError):
    """A replication rule of that name exists already, in the database or config (HTTP 409)."""

    code, status, default_message = "RULE_EXISTS", 409, "replication rule exists already"


class ReplicationRuleReadOnly(RegistryError):
    """A replication rule of the config file, which the API may not change (HTTP 409)."""

    code, status, default_message = "RULE_READ_ONLY", 409, "replication rule is read-only"
