"""What can go wrong talking to a remote registry, as exceptions a caller can act on."""

from __future__ import annotations


class RemoteError(Exception):
    """A remote registry refused a request or could not be reached."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RemoteUnreachable(RemoteError):
    """The connection failed or broke (refused, reset, timed out)."""


class RemoteAuthError(RemoteError):
    """Credentials missing or refused (401), or the token service failed."""


class RemoteDenied(RemoteError):
    """Authenticated, but not allowed (403 / DENIED)."""


class RemoteNotFound(RemoteError):
    """No such repository, manifest, blob or upload (404)."""


class RemoteRangeError(RemoteError):
    """An upload chunk did not continue the upload (416): read its status and go on."""


class RemoteUnsupported(RemoteError):
    """The remote does not do this (405 / UNSUPPORTED), e.g. deleting tags."""


class DigestMismatch(RemoteError):
    """What was read back does not have the digest it should."""
