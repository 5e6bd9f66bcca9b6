"""Connection limits of ``wharf serve``: header and idle timeouts, a per-worker cap.

uvicorn has no header-read timeout and no body-idle timeout: a client sending its headers
a byte a second, or stopping in the middle of a body, holds its connection (and the
request's task) for as long as it likes. :class:`LimitedHttpToolsProtocol` is uvicorn's
httptools protocol (what ``uvicorn[standard]`` runs) with timers:

- **header** (``http.timeouts.header``): from the connection's start, and from the first
  byte of each later request, to the end of its headers. Then the connection is closed,
  after a ``408`` if part of a request came (a pipelined request waiting for the one
  before it is not timed).
- **idle** (``http.timeouts.idle``): while a request body comes, the longest time without
  a byte of it. The time the server itself is not reading (the application is busy with
  what it has, or has not yet asked for the body of an ``Expect: 100-continue``) does not
  count: a slow but steady upload never times out, however long it takes. The application
  sees a client disconnect (an upload keeps what it received and can be resumed). The
  same limit applies to a client that stops taking a response (nothing of it written for
  that long): the connection is dropped.
- **cap** (``http.maxconnections``, per worker process): a connection accepted beyond it
  gets its request answered ``429 TOOMANYREQUESTS`` (OCI JSON body, ``Retry-After``,
  ``Connection: close``) without reaching the application, and is closed. uvicorn's own
  ``limit_concurrency`` answers 503, which claims the server is broken; and not accepting
  connections is not something uvicorn can do.

Keep-alive (``http.timeouts.keepalive``) stays uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from registry.config import HTTPSettings
from registry.errors import TooManyRequests

log = logging.getLogger("wharf.http")

RETRY_AFTER = 1  # seconds a refused client is told to wait: requests take milliseconds
LINGER = 2.0  # seconds a refused connection's unread request is drained before closing
FILES_PER_PROCESS = 256  # descriptors a worker needs besides its connections


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits one worker applies (seconds; 0 turns a limit off)."""

    header_timeout: float = 30.0
    idle_timeout: float = 60.0
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, http: HTTPSettings) -> ConnectionLimits:
        return cls(http.timeouts.header_seconds, http.timeouts.idle_seconds, http.maxconnections)


def protocol_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` option for ``limits``: the protocol class with the limits bound
    (a picklable partial, so that spawned workers get the same)."""
    factory = functools.partial(LimitedHttpToolsProtocol, limits=limits)
    return cast("type[asyncio.Protocol]", factory)


def raise_file_limit(limits: ConnectionLimits) -> None:
    """Raise this process's open-file limit (workers inherit it) to what the connection cap
    needs, up to the hard limit; warn when the hard limit is lower."""
    if not limits.max_connections:
        return
    needed = limits.max_connections + FILES_PER_PROCESS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning(
                "open file limit %d is below http.maxconnections + %d: "
                "connections beyond it fail to be accepted",
                target,
                FILES_PER_PROCESS,
            )


class _TrackedFlow(FlowControl):
    """uvicorn's flow control, telling when the server asks for more of the request: then
    the client's idle time starts again."""

    def __init__(self, transport: asyncio.Transport, on_resume: Callable[[], None]) -> None:
        super().__init__(transport)
        self._on_resume = on_resume

    def resume_reading(self) -> None:
        self._on_resume()
        super().resume_reading()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and idle timeouts and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting to be sent when the write timer was armed
        self._request_begun = False  # bytes of a request whose headers are not complete
        self._in_body = False  # headers complete, body not yet
        self._last_read = 0.0  # loop time of the last body bytes, or of the server asking
        self._refused = False  # accepted beyond the cap: answer 429, then close
        self._draining = False  # refused and answered: read and drop what still comes

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _TrackedFlow(transport, self._server_reading)
        cap = self.limits.max_connections
        if cap and len(self.connections) > cap:
            self._refused = True
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._idle_timer, self._write_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._idle_timer = self._write_timer = self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        self._last_read = self.loop.time()
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.limits.idle_timeout and self._write_timer is None:
            self._unsent = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(self.limits.idle_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    # parser callbacks

    def on_message_begin(self) -> None:
        if self._draining:
            return
        super().on_message_begin()
        self._request_begun = True
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self._draining:
            return
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._request_begun = False
        if self._refused:
            self._refuse()
            return
        self._in_body = True
        self._last_read = self.loop.time()
        if self.limits.idle_timeout and self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.limits.idle_timeout, self._body_idle)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._draining:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._draining:
            return
        self._in_body = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().on_message_complete()

    # timers

    def _arm_header_timer(self) -> None:
        if self.limits.header_timeout:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._header_timeout
            )

    def _server_reading(self) -> None:
        self._last_read = self.loop.time()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.flow.read_paused:  # pipelined behind a request still being answered
            self._arm_header_timer()
            return
        log.info(
            "closed connection from %s: request headers not complete after %gs "
            "(http.timeouts.header)",
            self._peer(),
            self.limits.header_timeout,
        )
        if self._request_begun:
            self._write_response(408, "text/plain; charset=utf-8", b"request header timeout\n")
        self.transport.close()

    def _body_idle(self) -> None:
        self._idle_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._last_read = now  # the server is not reading: not the client's delay
        due = self._last_read + self.limits.idle_timeout
        if now < due:
            self._idle_timer = self.loop.call_at(due, self._body_idle)
            return
        log.info(
            "closed connection from %s: no request body bytes for %gs (http.timeouts.idle)",
            self._peer(),
            self.limits.idle_timeout,
        )
        self.transport.close()  # the application reads a client disconnect

    def _write_stalled(self) -> None:
        self._write_timer = None
        if not self.flow.write_paused or self.transport.is_closing():
            return
        unsent = self.transport.get_write_buffer_size()
        if unsent < self._unsent:  # a very slow reader, but it reads: wait on
            self._unsent = unsent
            self._write_timer = self.loop.call_later(self.limits.idle_timeout, self._write_stalled)
        else:
            log.info(
                "dropped connection to %s: it took no response bytes for %gs (http.timeouts.idle)",
                self._peer(),
                self.limits.idle_timeout,
            )
            self.transport.abort()  # close() would wait to send what it does not take

    # refusal beyond the cap

    def _refuse(self) -> None:
        self._draining = True
        log.info(
            "refused a request from %s: %d connections open, http.maxconnections is %d",
            self._peer(),
            len(self.connections),
            self.limits.max_connections,
        )
        error = TooManyRequests("too many connections to this registry, retry shortly")
        self._write_response(
            error.http_status,
            error.media_type,
            error.body(),
            [(b"retry-after", b"%d" % RETRY_AFTER)],
        )
        if self.transport.can_write_eof():
            # Half-close and drop the rest of the request for a moment: closing with it
            # unread would reset the connection, and the client could lose the answer.
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()

    def _write_response(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [name + b": " + value for name, value in headers or []]
        lines += [
            b"content-type: " + content_type.encode(),
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
