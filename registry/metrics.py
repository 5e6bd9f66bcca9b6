"""Prometheus metrics, one registry per app (no module-level collectors)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Set (by ``wharf serve`` with several workers) before the workers import prometheus_client.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The collectors the registry updates, and their text exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wharf_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wharf_http_request_duration_seconds",
            "Time to the end of the response, by route and method",
            ["route", "method"],
            registry=self.registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
        )
        self.bytes_in = Counter(
            "wharf_http_request_bytes",
            "Request body bytes received",
            ["route"],
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "wharf_http_response_bytes",
            "Response body bytes sent",
            ["route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "wharf_http_errors", "Error responses by OCI code", ["code"], registry=self.registry
        )
        # logins (issue #4): by source (htpasswd, ldap, robot) and result
        self.logins = Counter(
            "wharf_logins",
            "Password checks by source (htpasswd, ldap, robot) and result",
            ["source", "result"],
            registry=self.registry,
        )
        self.login_duration = Histogram(
            "wharf_login_duration_seconds",
            "Time to check a password (bind and group lookups for LDAP), by source",
            ["source"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.ldap_operations = Counter(
            "wharf_ldap_operations",
            "Requests sent to the LDAP directory (bind, search)",
            ["operation"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition: this process's metrics, or all workers' when there are several."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
