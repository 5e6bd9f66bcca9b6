"""Render :class:`RegistryError` (and any crash) as the spec's JSON error body."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.errors import RegistryError, StorageFull, Unavailable
from registry.service.pins import DigestBusy
from storage.driver import StorageUnavailable

log = logging.getLogger("wharf.errors")


class ErrorMiddleware:
    """Turns exceptions raised before the response started into OCI error responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            scope["wharf.error"] = "client disconnected"
            log.info("client disconnected: %s %s", scope["method"], scope["path"])
        except Exception as exc:
            if started:
                scope["wharf.error"] = f"{type(exc).__name__} after response started"
                log.exception("error while streaming %s %s", scope["method"], scope["path"])
                raise
            if isinstance(exc, DigestBusy):  # a write a GC run refused (e.g. a mirror's link)
                exc = Unavailable(str(exc))
            if isinstance(exc, StorageFull):
                full: StorageFull | None = exc
            else:
                full = None if isinstance(exc, RegistryError) else StorageFull.of(exc)
            if full is not None:  # an operational state, not a bug: one line, no traceback
                log.error(
                    "storage is full (%s): %s %s answered 507: %s",
                    full.full,
                    scope["method"],
                    scope["path"],
                    exc,
                )
                log.debug("storage full on %s", scope["path"], exc_info=exc)
                scope["wharf.error"] = full.label
                await _render(full, scope, send)
                return
            label = None
            if isinstance(exc, RegistryError):
                error = exc
            else:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                if isinstance(exc, StorageUnavailable):
                    error = Unavailable("storage unavailable, try again")
                    label = "STORAGE_UNAVAILABLE"
                elif _is_backend(exc):
                    error = Unavailable("metadata database unavailable, try again")
                    label = "DATABASE_UNAVAILABLE"
                else:
                    error = RegistryError()
            # the access log's "error" and the wharf_http_errors{code} label: which backend
            # failed, where the body says UNAVAILABLE for both (as the reference does)
            scope["wharf.error"] = label or error.code
            await _render(error, scope, send)


def _is_backend(exc: Exception) -> bool:
    return type(exc).__module__.startswith(("sqlalchemy", "aiosqlite", "asyncpg"))


async def _render(error: RegistryError, scope: Scope, send: Send) -> None:
    full = error.body()
    body = b"" if scope["method"] == "HEAD" else full
    headers = [
        (b"content-type", error.media_type.encode()),
        (b"content-length", str(len(full)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
