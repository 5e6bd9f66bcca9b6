"""Access log and request metrics, in one pass over the ASGI messages."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.metrics import Metrics
from registry.request_context import RequestInfo, current_request

access_log = logging.getLogger("wharf.access")


class ObserveMiddleware:
    """Counts, times and logs every HTTP request; adds ``X-Request-Id`` and fixed headers."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        log_enabled: bool = True,
        extra_headers: dict[str, list[str]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_enabled = log_enabled
        self.headers: list[tuple[bytes, bytes]] = [
            (b"docker-distribution-api-version", b"registry/2.0")
        ] + [
            (k.lower().encode(), v.encode())
            for k, values in (extra_headers or {}).items()
            for v in values
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        scope["wharf.request_id"] = request_id
        client = scope.get("client") or ("", 0)
        current_request.set(
            RequestInfo(
                id=request_id,
                addr=f"{client[0]}:{client[1]}",
                host=_header(scope, b"host") or "",
                method=scope["method"],
                useragent=_header(scope, b"user-agent") or "",
            )
        )
        state: dict[str, Any] = {"status": 0, "sent": 0, "received": 0}
        extra = [*self.headers, (b"x-request-id", request_id.encode())]

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            elif message["type"] == "http.response.body":
                state["sent"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        finally:
            self._record(scope, state, time.perf_counter() - start)

    def _record(self, scope: Scope, state: dict[str, Any], elapsed: float) -> None:
        route = scope.get("wharf.route", "other")
        method = scope["method"]
        status = state["status"] or 499
        m = self.metrics
        m.requests.labels(route, method, str(status)).inc()
        m.latency.labels(route, method).observe(elapsed)
        if state["received"]:
            m.bytes_in.labels(route).inc(state["received"])
        if state["sent"]:
            m.bytes_out.labels(route).inc(state["sent"])
        error = scope.get("wharf.error")
        if error:
            m.errors.labels(error).inc()
        if not self.log_enabled:
            return
        client = scope.get("client") or ("", 0)
        entry = {
            "request_id": scope["wharf.request_id"],
            "remote": client[0],
            "method": method,
            "path": scope.get("raw_path", b"").decode("latin-1") or scope["path"],
            "route": route,
            "repository": scope.get("wharf.repository"),
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "bytes_in": state["received"],
            "bytes_out": state["sent"],
            "user_agent": _header(scope, b"user-agent"),
        }
        if error:
            entry["error"] = error
        user = scope.get("wharf.user")
        if user:  # set by the auth middleware; never a password or token
            entry["user"] = user
        access_log.info(json.dumps(entry, separators=(",", ":")))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
