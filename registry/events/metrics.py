"""Prometheus collectors of event delivery, on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class EventMetrics:
    """Events queued, delivered, failed and dead per endpoint; pending count and lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["endpoint"]
        self.queued = Counter(
            "wharf_events_queued", "Events written to the outbox", labels, registry=registry
        )
        self.delivered = Counter(
            "wharf_events_delivered", "Events a receiver accepted (2xx)", labels, registry=registry
        )
        self.failed = Counter(
            "wharf_events_failed",
            "Events in a request that failed (to be retried)",
            labels,
            registry=registry,
        )
        self.dead = Counter("wharf_events_dead", "Events parked as dead", labels, registry=registry)
        self.pending = Gauge(
            "wharf_events_pending",
            "Events waiting for the endpoint (set by the process delivering to it)",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.lag = Gauge(
            "wharf_events_lag_seconds",
            "Age of the oldest event waiting for the endpoint",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
