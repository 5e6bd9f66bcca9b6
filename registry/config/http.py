"""``http``: the listener, TLS, the debug listener, timeouts and connection caps."""

from __future__ import annotations

import os

from pydantic import Field

from registry.config.base import Duration, _Section, duration, host_port


class TLSSettings(_Section):
    certificate: str = ""
    key: str = ""


class DebugPrometheusSettings(_Section):
    enabled: bool = True
    path: str = "/metrics"


class DebugSettings(_Section):
    """``http.debug``: as the reference registry, a second address (keep it private)
    serving the Prometheus metrics without credentials."""

    addr: str = ""  # "": no debug listener
    prometheus: DebugPrometheusSettings = DebugPrometheusSettings()

    @property
    def bind(self) -> tuple[str, int] | None:
        return host_port(self.addr, "http.debug.addr") if self.addr else None


class HTTPTimeoutSettings(_Section):
    """``http.timeouts`` (Wharf's; registry/httplimits.py): how long a client may hold a
    connection without progress. ``0s`` turns one off (keep-alive ``0s``: close after each
    response)."""

    # from a request's first byte (or the connect) to its last header
    header: Duration = duration("30s")
    # the longest gap in a request body, or in a client taking a response
    idle: Duration = duration("60s")
    keepalive: Duration = duration("75s")  # an idle connection between requests

    @property
    def header_seconds(self) -> float:
        return max(self.header, 0.0)

    @property
    def idle_seconds(self) -> float:
        return max(self.idle, 0.0)

    @property
    def keepalive_seconds(self) -> float:
        return max(self.keepalive, 0.0)


class HTTPSettings(_Section):
    addr: str = "127.0.0.1:5000"
    host: str = ""
    prefix: str = ""
    tls: TLSSettings = TLSSettings()
    debug: DebugSettings = DebugSettings()
    workers: int = 0  # 0: one per CPU, at most 4
    timeouts: HTTPTimeoutSettings = HTTPTimeoutSettings()
    # open connections per worker; requests beyond get 429 TOOMANYREQUESTS (0: no cap)
    maxconnections: int = Field(default=1000, ge=0)

    @property
    def worker_count(self) -> int:
        """Worker processes to run: ``workers``, or one per CPU (at most 4) when 0."""
        if self.workers > 0:
            return self.workers
        return max(1, min(os.cpu_count() or 1, 4))

    headers: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def bind(self) -> tuple[str, int]:
        return host_port(self.addr, "http.addr")
