"""Starting the immutability feature: the push guard and delete hook, and the API."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from registry.api.context import Services
from registry.immutability.api import PREFIX, Access, ImmutabilityAPI, admins_only, handles
from registry.immutability.hook import ImmutableKeeper, ImmutableMetrics, ImmutableTags
from registry.immutability.service import ImmutabilityService
from registry.meta.trail import NO_TRAIL, Trail

__all__ = ["ImmutableKeeper", "start_immutability"]


def start_immutability(
    services: Services,
    metrics: CollectorRegistry,
    mount: Callable[[str, ASGIApp, Callable[[str], bool]], None],
    *,
    default_project: str,
    access: Access = admins_only,
    trail: Trail = NO_TRAIL,
) -> ImmutableKeeper:
    """Refuse moving and deleting immutable tags in every push and delete transaction;
    serve ``/api/projects/NAME/immutable`` (mounted for these paths only, before the
    projects API). ``access``: who may list and change a project's rules (the projects
    feature's roles); ``trail``: where rule changes are recorded (the audit log).
    Returns the keeper a retention policy asks which tags it must keep."""
    tags = ImmutableTags(default_project, ImmutableMetrics(metrics))
    services.meta.add_guard(tags.guard)
    services.meta.add_hook(tags)
    mount(PREFIX, ImmutabilityAPI(ImmutabilityService(services.meta.db, trail), access), handles)
    return ImmutableKeeper()
