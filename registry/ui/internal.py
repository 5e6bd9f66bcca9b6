"""The pages' way into Wharf's own API: in-process requests to ``/api/...`` as the viewer.

A page that shows or changes what an API serves (projects, members, quotas, robots)
calls that API through :class:`InternalApi` with the viewer as the caller, so a page
grants and refuses exactly what the API does, with the API's own checks and errors: a
refusal arrives as the API's :class:`~registry.errors.RegistryError`, which the page
shows. Nothing goes over the network; the request never passes the auth middleware (the
caller is given, as the middleware would have left it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

from starlette.types import ASGIApp, Message

from registry.api.access import CALLER_KEY
from registry.middleware.auth import Caller
from registry.request_context import current_request


def api_path(*parts: str) -> str:
    """``/api/`` and ``parts``, each URL-encoded (a name may hold ``/`` or ``$``)."""
    return "/api/" + "/".join(quote(p, safe="") for p in parts)


@dataclass
class Answer:
    """What the API answered (a refusal is raised, not answered)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class InternalApi:
    """Calls ``dispatch`` (the app's ``/api/`` mounts) in-process."""

    def __init__(self, dispatch: ASGIApp) -> None:
        self.dispatch = dispatch

    async def call(
        self,
        caller: Caller,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: object = None,
        client: tuple[str, int] | None = None,
    ) -> Answer:
        """``path``: URL-encoded (:func:`api_path`). The caller becomes the actor of the
        page's request (events, the audit log), as the auth middleware makes the caller of
        an API request its actor."""
        info = current_request.get()
        if info is not None and info.actor is None and caller.name is not None:
            info.actor = caller.name
        data = json.dumps(body).encode() if body is not None else b""
        headers = [(b"host", b"wharf.internal")]
        if body is not None:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(data)).encode())]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),  # as a server hands it over: decoded, and raw
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(query or {}).encode(),
            "headers": headers,
            "client": client or ("127.0.0.1", 0),
            "server": ("wharf.internal", 80),
            CALLER_KEY: caller,
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        answer = Answer(0)
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = int(message["status"])
                answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.dispatch(scope, receive, send)
        answer.body = b"".join(chunks)
        return answer
