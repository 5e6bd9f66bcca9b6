"""``http.debug.addr``: the Prometheus metrics on a second, private address.

As with the reference registry, operators scrape this address (bound to loopback or a
management network) without credentials, while ``/metrics`` on the registry's own
address needs an administrator once ``auth`` is configured. The listener runs in a
thread of the ``wharf serve`` process: with several workers that is the supervisor,
which adds up every worker's metrics from the multiprocess directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from registry.config import DebugSettings

log = logging.getLogger("wharf")

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log line per scrape."""


class DebugServer:
    """A running debug listener; :meth:`close` stops it."""

    def __init__(self, settings: DebugSettings, registry: CollectorRegistry) -> None:
        bind = settings.bind
        assert bind is not None
        metrics = make_wsgi_app(registry)
        path = settings.prometheus.path
        enabled = settings.prometheus.enabled

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if enabled and environ.get("PATH_INFO") == path:
                body: Iterable[bytes] = metrics(environ, start_response)
                return body
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]

        self._server = make_server(
            bind[0], bind[1], app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wharf-debug", daemon=True
        )
        self._thread.start()
        log.info("debug listener on %s:%d (metrics at %s)", bind[0], bind[1], path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
