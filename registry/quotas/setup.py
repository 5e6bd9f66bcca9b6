"""Starting the quota feature: the accounting hook, GC's removal callback and the API."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.meta.trail import NO_TRAIL, Trail
from registry.quotas.api import PREFIX, Access, QuotaAPI, admins_only, handles
from registry.quotas.hook import QuotaAccounting, QuotaMetrics, Record, gc_removed, outbox_notify
from registry.quotas.service import QuotaService

__all__ = ["gc_removed", "start_quotas"]


def start_quotas(
    services: Services,
    metrics: CollectorRegistry,
    mount: Callable[[str, ASGIApp, Callable[[str], bool]], None],
    record: Record | None = None,
    *,
    default_project: str,
    access: Access = admins_only,
    trail: Trail = NO_TRAIL,
) -> QuotaService:
    """Count usage and enforce quotas in every push and delete transaction; serve
    ``/api/projects/NAME/quota|usage`` (mounted for these paths only, before the
    projects API that serves the rest of ``/api/projects``). ``record``: the events
    feature's outbox writer, for the 80 % and 100 % events (None without endpoints);
    ``access``: who may read and set a project's quota (the projects feature's roles)."""
    notify = [outbox_notify(record)] if record is not None else []
    hook = QuotaAccounting(default_project, QuotaMetrics(metrics), notify)
    services.meta.add_hook(hook)
    service = QuotaService(services.meta.db, default_project, trail)
    mount(PREFIX, QuotaAPI(service, access), handles)  # under the projects API's prefix
    return service
